// docker-compose.scaled.yml, as `docker-compose config` resolves it, has the
// scaled shape it promises: three notify instances whose environment the
// service accepts, on the Redis Cluster of the file's six nodes, reachable only
// through nginx; nginx's file (deploy/nginx-fleet.conf) has those three
// instances as its upstream, deploy/nginx.conf's server block line for line,
// and passes `nginx -t`; the init container's script really forms a 3+3
// cluster (run here by sh against six redis-server processes, its node list
// pointed at them) and finds it formed the second time.
//
// Not here (no Docker engine): the images themselves. Running the whole
// topology without Docker is the fleet tests' job (see the file's header).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { loadConfig } from '../src/config.js'
import { isMaster, parseClusterNodes } from './helpers/cluster-nodes.js'
import { findNginx, mainConf, renderFleetConf } from './helpers/fleet-nginx.js'
import { freePort } from './helpers/redis.js'
import { adminClient, allSettled, spawnOnFreePort } from './helpers/redis-proc.js'
import { missing, noYaml, run, unknownSettings, yamlDocs } from './helpers/manifests.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FILE = 'docker-compose.scaled.yml'

interface Service {
  image?: string
  build?: unknown
  command?: string[]
  environment?: Record<string, string>
  depends_on?: Record<string, { condition: string }>
  ports?: unknown[]
  volumes?: string[]
}

const nginx = findNginx()
const skip = missing('docker-compose', ['version']) || noYaml() || (nginx === undefined && 'nginx is not installed (.ci/run installs it)')
if (skip && process.env.CI) t.fail(skip)

t.test(FILE, { skip }, async (t) => {
  const [doc] = yamlDocs(run('docker-compose', ['-f', FILE, 'config'], { cwd: ROOT })) as [{ services: Record<string, Service> }]
  const services = doc.services
  const names = Object.keys(services)
  const instances = names.filter((n) => services[n]?.build !== undefined)
  const redisNodes = names.filter((n) => services[n]?.command?.join(' ').includes('--cluster-enabled yes'))
  t.equal(instances.length, 3, `three notify instances built from this directory: ${instances.join(', ')}`)
  t.equal(redisNodes.length, 6, `six Redis Cluster nodes: ${redisNodes.join(', ')}`)
  const init = services['redis-cluster-init']
  // What the container's sh gets: `docker-compose config` prints $ as $$.
  const script = (init?.command?.[2] ?? '').replaceAll('$$', '$')
  const nodesLine = /^nodes="([^"]*)"$/m.exec(script)

  t.test('the init container forms the cluster of the six nodes', async (t) => {
    t.match(init?.command, ['sh', '-ec', String])
    t.same(nodesLine?.[1]?.split(' '), redisNodes.map((n) => `${n}:6379`), 'its node list is the six nodes')
    for (const n of redisNodes) t.equal(init?.depends_on?.[n]?.condition, 'service_healthy', `it waits for ${n}`)
  })

  for (const name of instances) {
    t.test(`${name}: an environment the service accepts, on this Cluster, behind nginx`, async (t) => {
      const s = services[name] as Service
      const env = s.environment ?? {}
      t.same(unknownSettings(env), [], 'every variable is a setting of src/config.ts or src/redis-config.ts')
      const config = loadConfig(env)
      const topology = config.redis?.topology
      t.equal(topology?.kind, 'cluster')
      if (topology?.kind === 'cluster') {
        for (const seed of topology.nodes) t.ok(redisNodes.includes(seed.host) && seed.port === 6379, `seed ${seed.host}:${seed.port} is a node here`)
      }
      if (config.auth.mode === 'upstream') t.ok(names.includes(new URL(config.auth.url).hostname), 'the auth upstream is a service here')
      t.equal(s.depends_on?.['redis-cluster-init']?.condition, 'service_completed_successfully', 'starts once the cluster is formed')
      t.equal(s.ports, undefined, 'publishes no port: every request comes through nginx (TRUST_PROXY=1 counts on it)')
      t.equal(config.trustProxy, 1)
    })
  }

  t.test('nginx: deploy/nginx-fleet.conf, upstream of the three instances, the server block of deploy/nginx.conf', async (t) => {
    const mounts = services.nginx?.volumes ?? []
    t.ok(mounts.some((v) => v.startsWith(join(ROOT, 'deploy/nginx-fleet.conf') + ':')), 'mounts deploy/nginx-fleet.conf')
    for (const n of instances) t.equal(services.nginx?.depends_on?.[n]?.condition, 'service_healthy', `starts once ${n} is healthy`)
    const fleet = readFileSync(join(ROOT, 'deploy/nginx-fleet.conf'), 'utf8')
    const single = readFileSync(join(ROOT, 'deploy/nginx.conf'), 'utf8')
    const upstream = fleet.slice(0, fleet.indexOf('\nserver {'))
    const servers = [...upstream.matchAll(/^\s*server\s+([^\s;]+)/gm)].map((m) => m[1])
    const port = loadConfig(services[instances[0] as string]?.environment ?? {}).port
    t.same(servers, instances.map((n) => `${n}:${port}`), 'upstream servers: the instances, on their PORT')
    const block = (text: string) => text.slice(text.indexOf('\nserver {'))
    t.equal(block(fleet), block(single), 'from `server {` on, deploy/nginx.conf to the letter')

    // nginx resolves upstream names at start: point them at loopback for the check.
    const dir = mkdtempSync(join(tmpdir(), 'notify-fleet-nginx-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const listen = await freePort()
    writeFileSync(join(dir, 'fleet.conf'), renderFleetConf(fleet, instances.map(() => port), listen))
    writeFileSync(join(dir, 'nginx.conf'), mainConf(dir, join(dir, 'fleet.conf')))
    const test = spawnSync(nginx as string, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-t'], { encoding: 'utf8' })
    t.equal(test.status, 0, 'nginx -t accepts it', { output: test.stderr })
  })

  t.test("the init container's script forms a 3+3 cluster, and finds it formed the next time", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'notify-fleet-redis-'))
    const used = new Set<number>()
    const procs = await allSettled(
      redisNodes.map(() =>
        spawnOnFreePort(
          (port) => [
            '--port', `${port}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
            '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir,
          ],
          { avoid: used, bus: true },
        ),
      ),
    )
    t.teardown(async () => {
      await Promise.all(procs.map((p) => p.kill()))
      rmSync(dir, { recursive: true, force: true })
    })
    // Only the `nodes` line names addresses: point it at these processes.
    const local = script.replace(/^nodes="[^"]*"$/m, `nodes="${procs.map((p) => `127.0.0.1:${p.port}`).join(' ')}"`)
    const runInit = () => spawnSync('sh', ['-ec', local], { encoding: 'utf8', timeout: 60_000 })
    const first = runInit()
    t.equal(first.status, 0, 'exits 0', { stderr: first.stderr })
    t.match(first.stdout, /cluster ok on every node\n$/)
    const admin = adminClient(t, procs[0]?.port as number)
    // Slots are agreed when the script ends; replicas' roles reach every view by gossip.
    let roles = ''
    for (let i = 0; i < 100 && roles !== '3 masters, 3 replicas'; i++) {
      if (i > 0) await sleep(100)
      const nodes = parseClusterNodes(String(await admin.cluster('NODES')))
      roles = `${nodes.filter(isMaster).length} masters, ${nodes.filter((n) => n.flags.has('slave')).length} replicas`
    }
    t.equal(roles, '3 masters, 3 replicas')
    const again = runInit()
    t.equal(again.status, 0, 'the second run exits 0 too')
    t.match(again.stdout, /^cluster already formed\n/)
  })
})
