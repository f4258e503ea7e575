// The scaled shape of docker-compose.scaled.yml from local processes, as its
// header asks of a rehearsal without Docker: Redis (one redis-server, or the
// local 3+3 Cluster), the demo auth upstream (examples/auth-upstream), three
// `node dist/server.js` with the compose file's notify-N environment (Redis
// and auth addresses rewritten to the local ones; HOST and PORT their own),
// and a real nginx with deploy/nginx-fleet.conf in front (its upstream servers
// and `listen` rewritten, nothing else). Instances are real child processes,
// so SIGTERM and SIGKILL are real; each keeps its port across restarts, as a
// container keeps its address in the upstream.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startCluster } from './cluster.js'
import { startFleetNginx, type FleetNginx } from './fleet-nginx.js'
import { yamlDocs } from './manifests.js'
import { freePort, startRedis } from './redis.js'
import { waitFor } from './wait.js'

interface Teardown {
  teardown(fn: () => unknown): void
  comment(...args: unknown[]): void
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SERVER = fileURLToPath(new URL('../../dist/server.js', import.meta.url))
const AUTH = fileURLToPath(new URL('../../examples/auth-upstream/server.mjs', import.meta.url))
export const PUBLISH_TOKEN = 'fleet-test-publish-token'

/** The kernel kills a child whose test process died without its teardown (tap's timeout). */
const GUARD = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0 ? ['setpriv', '--pdeathsig', 'KILL'] : []

export interface Instance {
  readonly name: string
  readonly port: number
  readonly base: string
  readonly running: boolean
  /** Sends `signal` and resolves with the exit code (null when killed by the signal). */
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<number | null>
  /** Spawns the process again on its port; resolves once its /readyz answers 200. */
  start(): Promise<void>
  /** The last lines of its log, for failure messages. */
  log(): string
}

export interface Fleet {
  instances: Instance[]
  nginx: FleetNginx
  /** http://localhost:<port>: nginx, as browsers reach it. */
  base: string
  /** http://127.0.0.1:<port>: nginx, for Node's fetch (nginx listens on IPv4 loopback only). */
  direct: string
}

export interface FleetOptions {
  redis: 'single' | 'cluster'
  /** The pages' origin, for CORS_ORIGINS. */
  pageOrigin: string
}

/** notify-1's environment in docker-compose.scaled.yml (the three are one anchor). */
function composeEnvironment(): Record<string, string> {
  const [doc] = yamlDocs(readFileSync(`${ROOT}/docker-compose.scaled.yml`, 'utf8')) as [{ services: Record<string, { environment?: Record<string, string> }> }]
  const env = doc.services['notify-1']?.environment
  if (env === undefined) throw new Error('docker-compose.scaled.yml: notify-1 has no environment')
  // Compose interpolation: only ${NAME:-default} is used there.
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')]))
}

async function startAuth(t: Teardown): Promise<string> {
  const port = await freePort()
  const [cmd = process.execPath, ...pre] = [...GUARD, process.execPath]
  const proc = spawn(cmd, [...pre, AUTH], { env: { PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = once(proc, 'exit')
      proc.kill('SIGKILL')
      await exited
    }
  })
  // It prints one line once it listens.
  await once(proc.stdout, 'data')
  proc.stdout.resume()
  return `http://127.0.0.1:${port}/me`
}

function instance(t: Teardown, name: string, port: number, env: Record<string, string>): Instance {
  let proc: ChildProcess | undefined
  let exit: Promise<[number | null]> | undefined
  let out = ''
  const alive = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null
  const base = `http://127.0.0.1:${port}`
  const stop = async (signal: 'SIGTERM' | 'SIGKILL') => {
    if (!alive() || exit === undefined) throw new Error(`${name} is not running`)
    proc?.kill(signal)
    const [code] = await exit
    return code
  }
  t.teardown(async () => {
    if (alive()) await stop('SIGKILL')
  })
  return {
    name,
    port,
    base,
    get running() {
      return alive()
    },
    stop,
    log: () => out.slice(-4000),
    start: async () => {
      if (alive()) throw new Error(`${name} is running`)
      const [cmd = process.execPath, ...pre] = [...GUARD, process.execPath]
      const p = spawn(cmd, [...pre, SERVER], { env: { PATH: process.env.PATH, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
      proc = p
      exit = once(p, 'exit') as Promise<[number | null]>
      const keep = (d: Buffer) => {
        out += d.toString()
        if (out.length > 64_000) out = out.slice(-32_000)
      }
      p.stdout?.on('data', keep)
      p.stderr?.on('data', keep)
      await waitFor(
        async (reason) => {
          if (p.exitCode !== null) throw new Error(`${name} exited (${p.exitCode}): ${out.slice(-2000)}`)
          const res = await fetch(`${base}/readyz`).catch((err: unknown) => {
            reason(`/readyz: ${(err as Error & { cause?: Error }).cause?.message ?? err}; log: ${out.slice(-1500)}`)
          })
          if (res === undefined) return false
          reason(`/readyz ${res.status} ${await res.text()}; log: ${out.slice(-1500)}`)
          return res.status === 200
        },
        { timeoutMs: 30_000, what: `${name} ready (GET /readyz 200)` },
      )
    },
  }
}

/** Redis, the auth upstream, three instances (ready) and nginx in front of them. */
export async function startFleet(t: Teardown, opts: FleetOptions): Promise<Fleet> {
  const env = composeEnvironment()
  delete env.REDIS_CLUSTER_NODES
  if (opts.redis === 'cluster') env.REDIS_CLUSTER_NODES = (await startCluster(t)).seeds
  else env.REDIS_URL = (await startRedis(t)).url
  const auth = new URL(env.AUTH_UPSTREAM_URL ?? 'http://auth/me')
  env.AUTH_UPSTREAM_URL = new URL(auth.pathname, await startAuth(t)).href
  Object.assign(env, {
    HOST: '127.0.0.1',
    PUBLISH_TOKEN,
    CORS_ORIGINS: opts.pageOrigin,
    // Every page connects from 127.0.0.1: the per-IP limit would count them all
    // as one client (test/limits.test.ts tests it).
    CONNECT_RATE_PER_MIN: '0',
  })
  const ports = [await freePort(), await freePort(), await freePort()]
  const instances = ports.map((port, i) => instance(t, `notify-${i + 1}`, port, env))
  await Promise.all(instances.map((i) => i.start()))
  const nginx = await startFleetNginx(t, ports)
  return { instances, nginx, base: `http://localhost:${nginx.port}`, direct: `http://127.0.0.1:${nginx.port}` }
}
