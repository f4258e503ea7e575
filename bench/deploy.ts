// Rolling deploy of three instances holding N streams: each instance in turn
// gets SIGTERM, and is started again on the same port as soon as it has exited;
// the next one gets SIGTERM once every stream is live again (the README's
// procedure, "Deploys"), or with --pace=ready as soon as /readyz answers 200
// (what a Kubernetes rolling update does, without waiting for the clients:
// the restarts then overlap). Events are published
// at a steady rate through the build's createPublisher the whole time. Per
// restart: the drain, the time until ready, the time from SIGTERM until every
// stream that was on the instance is live again, the reconnects and the
// connects per second the fleet absorbed, the longest gap a stream saw. Over
// the run: events acknowledged, lost (acknowledged, never delivered),
// duplicated, out of order, resyncs. Target: 0 lost, 0 duplicates.
//
// Usage: npm run bench:deploy -- [streams=15000] [runs=3] [--redis=single|cluster]
//          [--rate=200] [--workers=2] [--pace=streams|ready]
//   --redis=cluster  the local 3+3 Redis Cluster (bench/redis-topology.ts).
//   --rate=N         events per second, each to one random user (per-user seq).
//   --workers=N      client processes holding the streams (2 to 4; at most
//                    18,000 sockets each: the soft limit is 20,000 files).
// Prints one JSON line per run, then one summary line (medians and per-run values).
//
// The clients (deploy/event-source.ts) behave as EventSource does: when a
// stream ends they wait the `retry:` the service sent, as is, and reconnect
// with Last-Event-ID. The balancer is a round robin over the three ports, one
// rotation per client process, that the clients apply themselves; it stands in
// for nginx (least_conn in deploy/nginx-fleet.conf), which is not in the bench:
// 15,000 proxied streams would need 30,000 descriptors in nginx. Unlike
// least_conn it does not steer reconnects to the emptiest instance, so the
// restarted one gets only its share; a refused connect or an error answer
// tries the instance after the one that failed, after a short back-off (nginx
// would at once: proxy_next_upstream).
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { type DeliveryCheck, mergeChecks } from './deploy/delivery.js'
import type { Attempt } from './deploy/event-source.js'
import { type Restart, type RestartFigures, restartFigures, runFigures } from './deploy/figures.js'
import { Instance, portBelowEphemeral } from './deploy/instance.js'
import { SteadyPublisher } from './deploy/steady-publisher.js'
import type { AllLive, Finished, Opened, ToWorker } from './deploy/worker.js'
import { deadline, REPO, startUpstream } from './lib.js'
import { ask, startWorker, type Worker } from './load/ipc.js'
import { cpuOf, quiet } from './load/proc.js'
import { buildPublisher } from './load/publisher.js'
import { median } from './load/stats.js'
import { type RedisKind, startTopology, type Topology } from './redis-topology.js'
import { CHANNEL, redisCpu, sleep } from './run-common.js'

const INSTANCES = 3
const MAX_SOCKETS_PER_PROCESS = 18_000
/** Streams each worker opens at a time in the first connect (not part of the deploy), and how long it may take. */
const OPEN_IN_FLIGHT = 250
const OPEN_TIMEOUT_MS = 300_000
/** Publishing runs this long before the first SIGTERM, so events are in flight when it lands. */
const LEAD_IN_MS = 1000
/** After the last restart: how long the streams may take to be live again, then to catch up. */
const ALL_LIVE_TIMEOUT_MS = 120_000
const CATCH_UP_TIMEOUT_MS = 60_000
/** After the last stream caught up: how long to keep listening for late duplicates. */
const GRACE_MS = 1000
/** Bound on one run, whatever happens. */
const RUN_LIMIT_MS = 15 * 60_000

interface Options {
  streams: number
  runs: number
  redis: RedisKind
  rate: number
  workers: number
  /** When the next instance is stopped: once every stream is live again, or once the restarted one is ready. */
  pace: 'streams' | 'ready'
}

function parseArgs(argv: string[]): Options {
  const positional = argv.filter((a) => !a.startsWith('--'))
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  for (const a of argv) {
    if (a.startsWith('--') && !['redis', 'rate', 'workers', 'pace'].includes(a.slice(2).split('=')[0] as string)) throw new Error(`unknown option ${a}`)
  }
  const o: Options = {
    streams: Number(positional[0] ?? 15_000),
    runs: Number(positional[1] ?? 3),
    redis: (flag('redis') ?? 'single') as RedisKind,
    rate: Number(flag('rate') ?? 200),
    workers: Number(flag('workers') ?? 2),
    pace: (flag('pace') ?? 'streams') as Options['pace'],
  }
  if (o.pace !== 'streams' && o.pace !== 'ready') throw new Error('--pace must be streams or ready')
  if (!(Number.isInteger(o.streams) && o.streams >= INSTANCES && o.runs >= 1 && o.rate > 0)) throw new Error(`bad arguments: ${argv.join(' ')}`)
  if (o.redis !== 'single' && o.redis !== 'cluster') throw new Error('--redis must be single or cluster')
  if (!(o.workers >= 2 && o.workers <= 4)) throw new Error('--workers must be 2 to 4')
  if (Math.ceil(o.streams / o.workers) > MAX_SOCKETS_PER_PROCESS) throw new Error(`more than ${MAX_SOCKETS_PER_PROCESS} streams per worker: add --workers`)
  return o
}

/** The run's clock: ms after t0 on the monotonic clock the workers share. */
function clock(): { t0: bigint; now: () => number } {
  const t0 = process.hrtime.bigint()
  return { t0, now: () => Number(process.hrtime.bigint() - t0) / 1e6 }
}

/** Each instance in turn: SIGTERM, wait for the exit, start again on the same port, wait for /readyz. */
async function rollingDeploy(instances: Instance[], now: () => number, settle: () => Promise<void>): Promise<Restart[]> {
  const restarts: Restart[] = []
  for (const [k, instance] of instances.entries()) {
    const sigtermAt = now()
    const exit = await instance.stop()
    const exitedAt = now()
    await instance.start()
    restarts.push({ instance: k, port: instance.port, sigtermAt, exitedAt, readyAt: now(), exit })
    await settle()
  }
  return restarts
}

/** Worker w's share of the users: a contiguous block; user i's first stream is on instance i mod 3. */
function shares(users: string[], workers: number): { users: string[]; first: number }[] {
  const size = Math.ceil(users.length / workers)
  return Array.from({ length: workers }, (_, w) => ({ users: users.slice(w * size, (w + 1) * size), first: w * size }))
}

async function runOnce(o: Options, run: number, upstream: string): Promise<Record<string, unknown>> {
  const topo = await startTopology(o.redis)
  const instances: Instance[] = []
  const workers: Worker[] = []
  let closePublisher = () => {}
  try {
    const env = { ...topo.env, AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream, NOTIFY_CHANNEL: CHANNEL }
    for (let k = 0; k < INSTANCES; k++) instances.push(new Instance(await portBelowEphemeral(), env))
    await Promise.all(instances.map((i) => i.start()))
    const entry = fileURLToPath(new URL('./deploy/worker.ts', import.meta.url))
    workers.push(...(await Promise.all(Array.from({ length: o.workers }, () => startWorker(entry, ['--deploy-worker'])))))
    workerProcs.push(...workers.map((w) => w.proc))
    const users = Array.from({ length: o.streams }, (_, i) => `deploy-${i}`)
    const share = shares(users, o.workers)
    const { t0, now } = clock()

    // 1. Every stream open, spread evenly over the instances (not part of the deploy).
    const opened = await openAll(workers, share, instances.map((i) => i.port), t0)
    const connectMs = Math.round(now())
    // The open's tail (auth calls, subscriptions) done before anything is timed.
    await Promise.all(instances.map((i) => quiet(i.pid as number, 10_000)))

    // 2. Steady publishing, and the rolling deploy under it.
    const built = await buildPublisher(REPO, topo, { channel: CHANNEL })
    closePublisher = built.close
    const publisher = new SteadyPublisher(built.publisher, users, o.rate)
    const load = loadMeter(workers, topo)
    publisher.start()
    await sleep(LEAD_IN_MS)
    const allLive = () =>
      Promise.all(workers.map((w) => ask<AllLive>(w, { cmd: 'all-live', timeoutMs: ALL_LIVE_TIMEOUT_MS }, 'all-live', ALL_LIVE_TIMEOUT_MS + 10_000)))
    const restarts = await rollingDeploy(instances, now, o.pace === 'streams' ? async () => void (await allLive()) : async () => {})

    // 3. Every stream live again, then publishing stops; every stream must then
    // get its user's last acknowledged event (awaited on the events themselves).
    const live = await allLive()
    await publisher.stop()
    const loadFigures = load.stop()
    const stoppedAt = now()
    const finished = await finishAll(workers, share, publisher)

    const timelines: Attempt[][] = finished.flatMap((f) => f.timelines)
    const perRestart = restarts.map((r) => restartFigures(r, restarts, timelines))
    const delivery = mergeChecks(finished.map((f) => f.delivery))
    const behind = finished.reduce((a, f) => a + f.behind, 0)
    const notLive = live.reduce((a, l) => a + l.total - l.live, 0)
    return {
      scenario: 'deploy',
      run,
      redis: o.redis,
      pace: o.pace,
      streams: o.streams,
      ratePerS: o.rate,
      workers: o.workers,
      ports: instances.map((i) => i.port),
      connectMs,
      ...(opened.retried > 0 && { openRetried: opened.retried }),
      restarts: perRestart,
      deployMs: deployMs(restarts, perRestart),
      notLiveAtEnd: notLive,
      ...runFigures(restarts, timelines),
      published: publisher.sent,
      acked: publisher.ackedCount,
      ...(publisher.failed > 0 && { publishFailed: publisher.failed, publishError: publisher.firstError }),
      ...deliveryFigures(delivery),
      behindAtEnd: behind,
      /** Publishing stopped until the last stream had its user's last acknowledged event. */
      catchUpMs: Math.round(Math.max(...finished.map((f) => f.caughtUpAt)) - stoppedAt),
      load: loadFigures,
      serviceLog: serviceLogSummary(instances),
      clean: isClean(perRestart, delivery, behind, notLive),
    }
  } finally {
    await Promise.all(workers.map((w) => ask(w, { cmd: 'close' }, 'closed', 30_000).catch(() => {})))
    for (const w of workers) w.proc.kill()
    await Promise.all(instances.map((i) => i.stop()))
    closePublisher()
    await topo.stop()
  }
}

type Share = ReturnType<typeof shares>[number]

/** Opens every worker's streams, each on its user's first instance; throws unless all are live. */
async function openAll(workers: Worker[], share: Share[], ports: number[], t0: bigint): Promise<{ retried: number }> {
  const opened = await Promise.all(
    workers.map((w, k) => {
      const s = share[k] as Share
      const homes = s.users.map((_, i) => ports[(s.first + i) % INSTANCES] as number)
      const msg: ToWorker = { cmd: 'open', t0: String(t0), ports, users: s.users, homes, turn: k, inFlight: OPEN_IN_FLIGHT, timeoutMs: OPEN_TIMEOUT_MS }
      return ask<Opened>(w, msg, 'opened', OPEN_TIMEOUT_MS + 30_000)
    }),
  )
  const failed = opened.reduce((a, r) => a + r.failed, 0)
  if (failed > 0) throw new Error(`${failed} streams failed to open: ${JSON.stringify(opened.flatMap((r) => r.failures))}`)
  return { retried: opened.reduce((a, r) => a + r.retried, 0) }
}

/** Tells each worker what was acknowledged for its users; resolves with their reports once they have caught up. */
function finishAll(workers: Worker[], share: Share[], publisher: SteadyPublisher): Promise<Finished[]> {
  return Promise.all(
    workers.map((w, k) => {
      const acked = (share[k]?.users ?? []).flatMap((u): [string, number[]][] => {
        const seqs = publisher.acked.get(u)
        return seqs === undefined ? [] : [[u, seqs]]
      })
      const msg: ToWorker = { cmd: 'finish', acked, timeoutMs: CATCH_UP_TIMEOUT_MS, graceMs: GRACE_MS }
      return ask<Finished>(w, msg, 'finished', CATCH_UP_TIMEOUT_MS + GRACE_MS + 30_000)
    }),
  )
}

/** First SIGTERM until every stream is live after the last restart (null if some never came back). */
function deployMs(restarts: Restart[], figures: RestartFigures[]): number | null {
  const ends = figures.map((f, k) => (f.allLiveMs === null ? null : (restarts[k] as Restart).sigtermAt + f.allLiveMs))
  if (ends.some((e) => e === null)) return null
  return Math.round(Math.max(...(ends as number[])) - (restarts[0]?.sigtermAt ?? 0))
}

/**
 * What else was busy during the deploy: the machine (load average at the
 * start), the client workers and Redis (CPU seconds), and this process, which
 * also answers every reconnect's auth call (its longest event-loop stall).
 */
function loadMeter(workers: Worker[], topo: Topology) {
  const load1m = +(loadavg()[0] as number).toFixed(2)
  const clients0 = workersCpu(workers)
  const redis0 = redisCpu(topo)
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  return {
    stop: () => {
      loop.disable()
      return {
        loadAvg1m: load1m,
        clientsCpuS: +(workersCpu(workers) - clients0).toFixed(2),
        redisCpuS: +(redisCpu(topo) - redis0).toFixed(2),
        benchLoopDelayMaxMs: Math.round(loop.max / 1e6),
      }
    },
  }
}

/** The services' warnings and errors (LOG_LEVEL=warn), by message, over every process. */
function serviceLogSummary(instances: Instance[]): Record<string, number> {
  const all: Record<string, number> = {}
  for (const i of instances) for (const [msg, n] of i.log) all[msg] = (all[msg] ?? 0) + n
  return all
}

/** CPU seconds of the client workers: a load generator near a full core would be measuring itself. */
const workersCpu = (workers: Worker[]) => workers.reduce((a, w) => a + cpuOf(w.proc.pid as number), 0)

function deliveryFigures(d: DeliveryCheck) {
  return {
    delivered: d.delivered,
    lost: d.lost,
    lostStreams: d.lostStreams,
    duplicates: d.duplicates,
    outOfOrder: d.outOfOrder,
    resyncs: d.resyncs,
    ...(d.unacked > 0 && { deliveredUnacked: d.unacked }),
    ...(d.foreign > 0 && { foreign: d.foreign }),
    ...(d.samples.length > 0 && { samples: d.samples }),
  }
}

function isClean(restarts: RestartFigures[], d: DeliveryCheck, behind: number, notLive: number): boolean {
  const drainsClean = restarts.every((r) => r.exit === 'code 0' && r.allLiveMs !== null)
  return drainsClean && notLive === 0 && behind === 0 && d.lost === 0 && d.duplicates === 0 && d.outOfOrder === 0 && d.resyncs === 0
}

/** Medians over the runs, with each run's value; per-restart figures position by position. */
function summarize(o: Options, results: Record<string, unknown>[]): Record<string, unknown> {
  const num = (x: unknown) => (typeof x === 'number' ? x : Infinity)
  const show = (x: number) => (Number.isFinite(x) ? Math.round(x) : null)
  const scalar = (k: string) => {
    const v = results.map((r) => num(r[k]))
    return { median: show(median(v)), perRun: v.map(show) }
  }
  const perRestart = (f: (r: RestartFigures) => number | null) => {
    const v = results.map((r) => (r.restarts as RestartFigures[]).map((x) => num(f(x))))
    return { median: Array.from({ length: INSTANCES }, (_, k) => show(median(v.map((run) => run[k] ?? Infinity)))), perRun: v.map((run) => run.map(show)) }
  }
  return {
    scenario: 'deploy-summary',
    redis: o.redis,
    pace: o.pace,
    streams: o.streams,
    ratePerS: o.rate,
    runs: o.runs,
    node: process.version,
    allLiveMs: perRestart((r) => r.allLiveMs),
    drainMs: perRestart((r) => r.drainMs),
    readyMs: perRestart((r) => r.readyMs),
    reconnects: perRestart((r) => r.reconnects),
    connectsPerSAvg: perRestart((r) => r.connectsPerS.avg),
    connectsPerSPeak: perRestart((r) => r.connectsPerS.peak),
    worstGapMs: scalar('worstGapMs'),
    deployMs: scalar('deployMs'),
    acked: scalar('acked'),
    lost: scalar('lost'),
    duplicates: scalar('duplicates'),
    outOfOrder: scalar('outOfOrder'),
    resyncs: scalar('resyncs'),
    loadAvg1mPerRun: results.map((r) => (r.load as { loadAvg1m: number }).loadAvg1m),
    cleanRuns: results.filter((r) => r.clean === true).length,
  }
}

const workerProcs: ChildProcess[] = []

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  process.on('exit', () => {
    for (const p of workerProcs) if (p.exitCode === null) p.kill('SIGKILL')
  })
  deadline(o.runs * RUN_LIMIT_MS, 'deploy')
  const upstream = await startUpstream()
  const results: Record<string, unknown>[] = []
  for (let run = 1; run <= o.runs; run++) {
    const r = await runOnce(o, run, upstream)
    console.log(JSON.stringify(r))
    results.push(r)
  }
  const summary = summarize(o, results)
  console.log(JSON.stringify(summary))
  process.exit(summary.cleanRuns === o.runs ? 0 : 1)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
