// The command line of bench/run.ts: scenarios, their defaults, options.
import { resolve } from 'node:path'
import type { PublishMode } from './load/publisher.js'
import { REPO } from './lib.js'
import type { RedisKind } from './redis-topology.js'

export type Scenario = 'targeted' | 'capacity' | 'broadcast' | 'idle' | 'connect' | 'routing' | 'fleet'
export type Target = 'ours' | 'baseline' | 'nchan'

export interface Options {
  scenario: Scenario
  targets: Target[]
  runs: number
  streams: number
  rate: number
  seconds: number
  workers: number
  /** Streams each worker opens at a time. */
  inFlight: number
  bind: boolean
  /** --publish=plain|script: PUBLISH on the classic channel, or the build's createPublisher (redis/publish.lua). */
  publish: PublishMode
  /** --redis=single|cluster: one redis-server, or a local 3+3 Redis Cluster started by the bench. */
  redis: RedisKind
  /** --service=DIR: the build under test (DIR/dist/server.js, DIR/dist/publisher.js). Default: this repository. */
  service: string
  /** routing: seconds B's (and A's) CPU is sampled at rest, before the window; fleet: every instance's. */
  idleSeconds: number
  /** connect: streams of other users held open (by four other workers) while the measured ones connect. */
  hold: number
  /** fleet: --instances=1,2,4, the instance counts each run measures, in this order. */
  instances: number[]
  /** --env.KEY=VALUE: extra service environment (experiments: HEARTBEAT_INTERVAL_MS...). */
  env: Record<string, string>
  /** --node-args="...": extra node flags for the service (--cpu-prof --cpu-prof-dir=...). */
  nodeArgs: string[]
}

interface Defaults {
  streams: number
  rate: number
  seconds: number
  workers?: number
  inFlight?: number
  publish?: PublishMode
}

export const DEFAULTS: Record<Scenario, Defaults> = {
  targeted: { streams: 15_000, rate: 2000, seconds: 20 },
  capacity: { streams: 19_000, rate: 500, seconds: 10 },
  broadcast: { streams: 10_000, rate: 1, seconds: 5 },
  idle: { streams: 15_000, rate: 0, seconds: 35 },
  // One stream at a time, each a new user: what one connect costs when nothing batches it.
  connect: { streams: 1000, rate: 0, seconds: 0, workers: 1, inFlight: 1 },
  // Two instances on one Redis, every stream on A, events to A's users by the publish script.
  routing: { streams: 15_000, rate: 2000, seconds: 20, publish: 'script' },
  // 1, 2 and 4 instances sharing the same streams and events, by the publish script.
  fleet: { streams: 15_000, rate: 2000, seconds: 20, publish: 'script' },
}

export class UsageError extends Error {}

const USAGE = `usage: npm run bench -- <${[...Object.keys(DEFAULTS), 'storm'].join('|')}> [--runs=N] [--target=ours|baseline|nchan|both|all]
  [--streams=N] [--rate=N] [--seconds=N] [--workers=N] [--in-flight=N] [--no-bind]
  [--publish=plain|script] [--redis=single|cluster] [--service=DIR] [--idle-seconds=N] [--hold=N]
  [--instances=1,2,4]
  [--env.KEY=VALUE] [--node-args="--cpu-prof --cpu-prof-dir=DIR"]
targets: ours (the service), baseline (bench/baseline/server.mjs), nchan (nginx with
  libnginx-mod-nchan, bench/nchan/nginx.conf.template), both = ours and baseline,
  all = ours, baseline and nchan, one after the other with the same options.
  Nchan: one worker, EventSource on /notify, one channel per user, each connect
  authorized by a subrequest to the same auth upstream, connects paced by the same
  --workers/--in-flight; events by HTTP POST /pub/<user> (a broadcast: 255 users
  per POST, Nchan's multi-channel publishing); no Redis. What differs: its
  heartbeat (a comment every 15 s, nchan_eventsource_ping_*) goes to every
  stream, busy or not; its history is in nginx's shared memory, not Redis; its
  CPU is nginx's (master + worker) against the service's plus Redis's; its RSS
  is nginx's processes' with the shared zone counted once. Not for routing or
  fleet; --publish, --redis, --service, --env and --node-args are the service's.`

export function parseArgs(argv: string[]): Options | 'storm' {
  const scenario = argv.find((a) => !a.startsWith('--'))
  if (scenario === 'storm') return 'storm'
  if (scenario === undefined || !(scenario in DEFAULTS)) throw new UsageError(USAGE)
  const known = ['target', 'runs', 'streams', 'rate', 'seconds', 'workers', 'in-flight', 'publish', 'redis', 'service', 'idle-seconds', 'hold', 'instances', 'node-args']
  for (const a of argv) {
    if (!a.startsWith('--') || a === '--no-bind' || a.startsWith('--env.')) continue
    if (!known.includes(a.slice(2).split('=')[0] as string)) throw new UsageError(`unknown option ${a}\n${USAGE}`)
  }
  const flag = (name: string): string | undefined => {
    const a = argv.find((x) => x.startsWith(`--${name}=`))
    return a?.slice(name.length + 3)
  }
  const num = (name: string, fallback: number) => {
    const v = Number(flag(name) ?? fallback)
    if (!Number.isFinite(v) || v < 0) throw new UsageError(`--${name} must be a number >= 0`)
    return v
  }
  const oneOf = <T extends string>(name: string, values: readonly T[], fallback: T): T => {
    const v = flag(name) ?? fallback
    if (!values.includes(v as T)) throw new UsageError(`--${name} must be ${values.join(', ')} (got ${v})`)
    return v as T
  }
  const d = DEFAULTS[scenario as Scenario]
  const target = oneOf('target', ['ours', 'baseline', 'nchan', 'both', 'all'], 'ours')
  const o: Options = {
    scenario: scenario as Scenario,
    targets: target === 'both' ? ['ours', 'baseline'] : target === 'all' ? ['ours', 'baseline', 'nchan'] : [target],
    runs: num('runs', 1),
    streams: num('streams', d.streams),
    rate: num('rate', d.rate),
    seconds: num('seconds', d.seconds),
    workers: Math.max(1, num('workers', d.workers ?? 4)),
    inFlight: Math.max(1, num('in-flight', d.inFlight ?? 100)),
    bind: !argv.includes('--no-bind'),
    publish: oneOf('publish', ['plain', 'script'], d.publish ?? 'plain'),
    redis: oneOf('redis', ['single', 'cluster'], 'single'),
    service: resolve(flag('service') ?? REPO),
    idleSeconds: num('idle-seconds', 10),
    hold: num('hold', 0),
    instances: (flag('instances') ?? '1,2,4').split(',').map(Number),
    env: Object.fromEntries(
      argv.filter((a) => a.startsWith('--env.')).map((a) => {
        const [k, ...v] = a.slice('--env.'.length).split('=')
        return [k as string, v.join('=')]
      }),
    ),
    nodeArgs: (flag('node-args') ?? '').split(' ').filter(Boolean),
  }
  if (o.targets.includes('baseline') && (o.redis !== 'single' || o.publish !== 'plain' || o.scenario === 'routing' || o.scenario === 'fleet')) {
    throw new UsageError('the baseline takes plain PUBLISH on one redis-server only')
  }
  if (o.targets.includes('nchan') && (o.scenario === 'routing' || o.scenario === 'fleet')) {
    throw new UsageError(`${o.scenario} measures instances of the service: not a scenario for Nchan`)
  }
  const servicesOwn = ['publish', 'redis', 'service', 'node-args'].filter((f) => flag(f) !== undefined).map((f) => `--${f}`)
  if (Object.keys(o.env).length > 0) servicesOwn.push('--env.*')
  if (target === 'nchan' && servicesOwn.length > 0) throw new UsageError(`${servicesOwn.join(', ')}: for the service, not for Nchan`)
  if (o.hold > 0 && o.scenario !== 'connect') throw new UsageError('--hold is for the connect scenario')
  if (flag('instances') !== undefined && o.scenario !== 'fleet') throw new UsageError('--instances is for the fleet scenario')
  if (o.instances.some((n) => !Number.isInteger(n) || n < 1 || n > 16) || new Set(o.instances).size !== o.instances.length) {
    throw new UsageError('--instances: distinct whole numbers from 1 to 16, comma-separated (e.g. 1,2,4)')
  }
  if (o.hold / 4 > 18_000) throw new UsageError('--hold: at most 72,000 (four workers)')
  if (o.scenario === 'broadcast' && o.publish === 'script') {
    throw new UsageError('broadcast publishes one event naming every user with PUBLISH (the script takes one recipient per call)')
  }
  // No process may hold more than 20,000 open files: each worker holds streams / workers sockets.
  if (o.streams / o.workers > 18_000) throw new UsageError(`${o.streams} streams over ${o.workers} workers: more than 18,000 sockets in one worker; raise --workers`)
  return o
}
