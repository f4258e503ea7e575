// deploy/kubernetes, rendered as `kubectl kustomize` renders it (the base and
// each overlay), keeps its promises: /healthz liveness and /readyz readiness on
// the port the service listens on; a grace period above the preStop pause plus
// SHUTDOWN_TIMEOUT_MS (the manifest's value, or the service's default); a
// non-root, read-only, unprivileged container; an environment made only of
// real settings, which the service's own loadConfig accepts, on the Redis shape
// the overlay names; a memory request that holds MAX_CONNECTIONS streams at
// BENCHMARKS.md's figures; the Service, PodDisruptionBudget and autoscaler
// aimed at these pods; and the container's open-file check, run by a real sh
// under real limits. Schemas are checked apart, in CI (.ci/validate-kubernetes.sh).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { type Config, loadConfig } from '../src/config.js'
import { missing, noYaml, run, unknownSettings, yamlDocs } from './helpers/manifests.js'

const ROOT = fileURLToPath(new URL('../deploy/kubernetes/', import.meta.url))
/** Each kustomization and the Redis shape it must configure. */
const KUSTOMIZATIONS = { base: 'single', 'overlays/sentinel': 'sentinel', 'overlays/cluster': 'cluster' } as const

// BENCHMARKS.md, as cited in deployment.yaml: the idle process (Reconnect
// storm: "about 80 MiB idle") and a stream right after connecting (Per
// scenario, `targeted`: 15.1 KiB).
const IDLE_MIB = 80
const STREAM_KIB = 15.1

interface Meta {
  name: string
  labels?: Record<string, string>
}
interface K8s {
  apiVersion: string
  kind: string
  metadata: Meta
  data?: Record<string, string>
  // Shapes differ by kind; each test reads what it needs.
  spec?: any
}

const skip = missing('kubectl', ['version', '--client']) || noYaml()
if (skip && process.env.CI) t.fail(skip)

function render(dir: string): K8s[] {
  return yamlDocs(run('kubectl', ['kustomize', join(ROOT, dir)])) as K8s[]
}

/** MiB of a Kubernetes memory quantity in Ki, Mi or Gi. */
function mib(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)$/.exec(q)
  if (m === null) throw new Error(`memory quantity ${q}: expected Ki, Mi or Gi`)
  return Number(m[1]) * { Ki: 1 / 1024, Mi: 1, Gi: 1024 }[m[2] as 'Ki' | 'Mi' | 'Gi']
}

const selects = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)

for (const [dir, shape] of Object.entries(KUSTOMIZATIONS)) {
  t.test(`deploy/kubernetes/${dir}`, { skip }, async (t) => {
    const objects = render(dir)
    const kinds = objects.map((o) => o.kind).sort()
    t.same(kinds, ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Secret', 'Service'], 'one of each object')
    const one = (kind: string) => objects.find((o) => o.kind === kind) as K8s
    const deployment = one('Deployment')
    const pod = deployment.spec.template.spec
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>
    t.equal(pod.containers.length, 1, 'one container')
    const container = pod.containers[0]

    // The environment: exactly the ConfigMap and the Secret (no Service links).
    const env: Record<string, string> = {}
    for (const from of container.envFrom as { configMapRef?: { name: string }; secretRef?: { name: string } }[]) {
      const ref = from.configMapRef ?? from.secretRef
      const source = objects.find((o) => o.kind === (from.configMapRef ? 'ConfigMap' : 'Secret') && o.metadata.name === ref?.name)
      t.ok(source, `envFrom ${ref?.name} is rendered`)
      for (const [k, v] of Object.entries(source?.data ?? {})) env[k] = from.secretRef ? Buffer.from(v, 'base64').toString() : v
    }
    for (const e of (container.env ?? []) as { name: string; value?: string }[]) env[e.name] = e.value ?? ''
    t.equal(pod.enableServiceLinks, false, "no <SERVICE>_PORT variables beside the service's settings")
    t.same(unknownSettings(env), [], 'every variable is a setting of src/config.ts or src/redis-config.ts')
    let config: Readonly<Config>
    try {
      config = loadConfig(env)
    } catch (err) {
      t.fail(`the service refuses this environment: ${(err as Error).message}`)
      return
    }
    t.equal(config.redis?.topology.kind, shape, `the service runs on Redis ${shape}`)

    t.test('probes: /healthz liveness, /readyz readiness, on the port the service listens on', async (t) => {
      t.equal(container.livenessProbe?.httpGet?.path, '/healthz')
      t.equal(container.readinessProbe?.httpGet?.path, '/readyz')
      for (const probe of [container.livenessProbe, container.readinessProbe]) {
        const port = (container.ports as { name: string; containerPort: number }[]).find((p) => p.name === probe.httpGet.port)
        t.equal(port?.containerPort, config.port, `probe port ${probe.httpGet.port} is PORT (${config.port})`)
      }
    })

    t.test('grace period above the preStop pause plus SHUTDOWN_TIMEOUT_MS', async (t) => {
      const preStop = container.lifecycle?.preStop?.exec?.command as string[] | undefined
      t.match(preStop, ['sleep', /^\d+$/], 'preStop pauses')
      const pauseMs = Number(preStop?.[1]) * 1000
      const graceMs = Number(pod.terminationGracePeriodSeconds) * 1000
      t.ok(graceMs > pauseMs + config.shutdownTimeoutMs, `${graceMs} ms > ${pauseMs} ms + SHUTDOWN_TIMEOUT_MS ${config.shutdownTimeoutMs} ms`)
    })

    t.test('non-root, read-only root filesystem, no privilege', async (t) => {
      t.equal(pod.securityContext?.runAsNonRoot, true)
      t.ok(Number(pod.securityContext?.runAsUser) > 0, 'a non-zero uid')
      const sc = container.securityContext
      t.equal(sc?.readOnlyRootFilesystem, true)
      t.equal(sc?.allowPrivilegeEscalation, false)
      t.not(sc?.privileged, true)
      t.ok((sc?.capabilities?.drop as string[] | undefined)?.includes('ALL'), 'every capability dropped')
      t.equal(pod.automountServiceAccountToken, false, 'no API token mounted')
    })

    t.test('resources: the memory request holds MAX_CONNECTIONS streams (BENCHMARKS.md)', async (t) => {
      const { requests, limits } = container.resources
      t.ok(requests?.cpu, 'a CPU request')
      const needed = IDLE_MIB + (config.limits.maxConnections * STREAM_KIB) / 1024
      t.ok(mib(requests.memory) >= needed, `request ${requests.memory} >= ${needed.toFixed(0)} MiB for ${config.limits.maxConnections} streams`)
      t.ok(mib(limits.memory) >= mib(requests.memory), 'limit at least the request')
    })

    t.test('Service, PodDisruptionBudget and autoscaler aim at these pods', async (t) => {
      t.ok(selects(deployment.spec.selector.matchLabels, podLabels), 'the Deployment selects its pods')
      const service = one('Service')
      t.ok(selects(service.spec.selector, podLabels), 'the Service selects the pods')
      for (const p of service.spec.ports as { targetPort: string | number }[]) {
        t.ok((container.ports as { name: string }[]).some((c) => c.name === p.targetPort), `Service targetPort ${p.targetPort} is a container port`)
      }
      const pdb = one('PodDisruptionBudget')
      t.ok(selects(pdb.spec.selector.matchLabels, podLabels), 'the budget selects the pods')
      const hpa = one('HorizontalPodAutoscaler')
      t.match(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
      t.ok(hpa.spec.minReplicas > Number(pdb.spec.maxUnavailable), 'at least one pod stays while the budget allows a disruption')
      t.equal(deployment.spec.replicas, undefined, 'the autoscaler alone sets the count')
    })

    t.test('the container refuses to start below the open-file limit MAX_CONNECTIONS needs', async (t) => {
      t.match(container.command, ['sh', '-c', /exec node dist\/server\.js\s*$/])
      const script = container.command[2] as string
      const bin = mkdtempSync(join(tmpdir(), 'notify-k8s-'))
      t.teardown(() => rmSync(bin, { recursive: true, force: true }))
      writeFileSync(join(bin, 'node'), '#!/bin/sh\necho "started: node $*"\n')
      chmodSync(join(bin, 'node'), 0o755)
      // `ulimit -n` sets the soft and hard limits; lowering them needs no privilege.
      const start = (limit: number, extra: Record<string, string> = {}) =>
        spawnSync('sh', ['-c', 'ulimit -n "$0" && exec sh -c "$1"', String(limit), script], {
          encoding: 'utf8',
          env: { PATH: `${bin}:/usr/bin:/bin`, ...env, ...extra },
        })
      const need = config.limits.maxConnections + 1024
      const low = start(need - 1)
      t.equal(low.status, 1, `refused with a hard limit of ${need - 1}`)
      t.match(low.stderr, `below MAX_CONNECTIONS + 1024 = ${need}`, 'and says why')
      t.equal(low.stdout, '', 'node not started')
      const fewer = start(need - 1, { MAX_CONNECTIONS: String(config.limits.maxConnections - 1) })
      t.equal(fewer.stdout, 'started: node dist/server.js\n', 'started when MAX_CONNECTIONS fits the limit')
      const unset = start(10_000 + 1023, { MAX_CONNECTIONS: '' })
      t.equal(unset.status, 1, "an empty MAX_CONNECTIONS counts as the service's default, 10000")
    })
  })
}
