// The benchmark harness: npm run bench -- <scenario> [options]
//
//   targeted   15,000 streams, 2,000 events/s for 20 s, each to one user
//   capacity   19,000 streams, 500 events/s for 10 s
//   broadcast  10,000 streams; one event naming all of them in recipient_ids, 5 times, 1 s apart
//   idle       15,000 streams, heartbeats only, 35 s: memory per stream and CPU at rest
//   storm      10,000 streams reconnect at once with Last-Event-ID (bench/storm.ts)
//
// Options: --target=ours|baseline|both (default ours; baseline = bench/baseline/server.mjs,
// one Redis subscription per connection), --runs=N (default 1), --streams=N,
// --rate=N, --seconds=N, --workers=N (default 4), --no-bind (no 127.0.0.x source
// addresses), --env.KEY=VALUE (service environment), --node-args="--cpu-prof ..."
// (service node flags). Starts redis-server, an auth upstream and the service itself (all
// on loopback; every stream authenticates as its own user), and prints one JSON
// line per run, then a summary line of medians when --runs > 1.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { Fleet, type Merged } from './load/fleet.js'
import { cpuOf, memOf } from './load/proc.js'
import { publishAtRate } from './load/publisher.js'
import { dist, median } from './load/stats.js'
import { runWorker } from './load/worker.js'
import { CAPACITY, startRedis, startService, startUpstream, stopProcess } from './lib.js'

type Scenario = 'targeted' | 'capacity' | 'broadcast' | 'idle'
type Target = 'ours' | 'baseline'

interface Options {
  scenario: Scenario
  targets: Target[]
  runs: number
  streams: number
  rate: number
  seconds: number
  workers: number
  bind: boolean
  /** --env.KEY=VALUE: extra service environment (experiments: HEARTBEAT_INTERVAL_MS...). */
  env: Record<string, string>
  /** --node-args="...": extra node flags for the service (--cpu-prof --cpu-prof-dir=...). */
  nodeArgs: string[]
}

const DEFAULTS: Record<Scenario, { streams: number; rate: number; seconds: number }> = {
  targeted: { streams: 15_000, rate: 2000, seconds: 20 },
  capacity: { streams: 19_000, rate: 500, seconds: 10 },
  broadcast: { streams: 10_000, rate: 1, seconds: 5 },
  idle: { streams: 15_000, rate: 0, seconds: 35 },
}
const CHANNEL = 'notifications'
const BASELINE = fileURLToPath(new URL('./baseline/server.mjs', import.meta.url))
const KiB = (b: number) => +(b / 1024).toFixed(1)
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

class UsageError extends Error {}

function parseArgs(argv: string[]): Options | 'storm' {
  const scenario = argv.find((a) => !a.startsWith('--'))
  if (scenario === 'storm') return 'storm'
  if (scenario === undefined || !(scenario in DEFAULTS)) {
    throw new UsageError(`usage: npm run bench -- <${[...Object.keys(DEFAULTS), 'storm'].join('|')}> [--target=ours|baseline|both] [--runs=N] ...`)
  }
  const flag = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const num = (name: string, fallback: number) => Number(flag(name) ?? fallback)
  const d = DEFAULTS[scenario as Scenario]
  const target = flag('target') ?? 'ours'
  if (!['ours', 'baseline', 'both'].includes(target)) throw new UsageError(`--target must be ours, baseline or both (got ${target})`)
  return {
    scenario: scenario as Scenario,
    targets: target === 'both' ? ['ours', 'baseline'] : [target as Target],
    runs: num('runs', 1),
    streams: num('streams', d.streams),
    rate: num('rate', d.rate),
    seconds: num('seconds', d.seconds),
    workers: num('workers', 4),
    bind: !argv.includes('--no-bind'),
    env: Object.fromEntries(
      argv.filter((a) => a.startsWith('--env.')).map((a) => {
        const [k, ...v] = a.slice('--env.'.length).split('=')
        return [k as string, v.join('=')]
      }),
    ),
    nodeArgs: (argv.find((a) => a.startsWith('--node-args='))?.slice('--node-args='.length) ?? '').split(' ').filter(Boolean),
  }
}

/** Waits until a process has used under 5 % of a core for a whole second (the connect burst is over). */
async function quiet(pid: number, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  let last = cpuOf(pid)
  while (Date.now() < until) {
    await sleep(1000)
    const now = cpuOf(pid)
    if (now - last < 0.05) return
    last = now
  }
}

/**
 * The service's RSS once V8 has handed back what it will (its memory reducer
 * runs some seconds after allocation calms down): sampled every second until
 * it has not shrunk for `stableS` seconds, or `maxS` have passed.
 */
async function restingRss(pid: number, stableS = 15, maxS = 90): Promise<number> {
  let low = memOf(pid).rss
  let since = Date.now()
  const until = Date.now() + maxS * 1000
  while (Date.now() < until && Date.now() - since < stableS * 1000) {
    await sleep(1000)
    const rss = memOf(pid).rss
    if (rss < low - 256 * 1024) {
      low = rss
      since = Date.now()
    }
  }
  return Math.min(low, memOf(pid).rss)
}

async function runOnce(o: Options, target: Target, run: number): Promise<Record<string, unknown>> {
  // The baseline holds one Redis connection per stream.
  const redis = await startRedis(target === 'baseline' ? ['--maxclients', '100000'] : [])
  const upstream = await startUpstream()
  const env = { REDIS_URL: redis.url, AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream, NOTIFY_CHANNEL: CHANNEL, ...CAPACITY, ...o.env }
  const service = await startService(env, target === 'baseline' ? BASELINE : undefined, o.nodeArgs)
  const pid = service.proc.pid as number
  const fleet = await Fleet.start(fileURLToPath(import.meta.url), { workers: o.workers, bind: o.bind, inFlight: 100 })
  const publisher = new Redis(redis.url)
  try {
    await quiet(pid, 10_000)
    // At rest, an idle service also gives back its start-up garbage (25 MiB
    // here): `idle` measures from the resting RSS, the other scenarios (which
    // measure no memory at rest) from the RSS once the CPU is quiet.
    const rssBefore = o.scenario === 'idle' ? await restingRss(pid) : memOf(pid).rss
    const users = Array.from({ length: o.streams }, (_, i) => `u${i}`)
    const t0 = performance.now()
    const opened = await fleet.open(service.port, users, 30_000)
    const connectMs = Math.round(performance.now() - t0)
    await quiet(pid)
    const rss = memOf(pid).rss
    const head = {
      scenario: o.scenario,
      target,
      run,
      streams: o.streams,
      connected: opened.ok,
      failed: opened.failed,
      ...(opened.failed > 0 && { failures: opened.failures }),
      connectMs,
      rssBeforeMiB: MiB(rssBefore),
      rssMiB: MiB(rss),
      rssPerStreamKiB: opened.ok > 0 ? KiB((rss - rssBefore) / opened.ok) : null,
    }
    if (service.proc.exitCode !== null) return { ...head, crashed: service.proc.exitCode }

    await fleet.measure()
    const cpu0 = { service: cpuOf(pid), redis: cpuOf(redis.pid) }
    const window0 = performance.now()
    let published = 0
    let expected = 0
    if (o.scenario === 'idle') {
      await sleep(o.seconds * 1000)
    } else if (o.scenario === 'broadcast') {
      // One event naming every user, repeated: each repetition is timed to its last delivery.
      const all = users
      const sent = await publishAtRate(publisher, CHANNEL, o.rate, o.seconds, () => ({ recipient_ids: all, type: 'bench' }))
      published = sent.length
      expected = sent.length * opened.ok
    } else {
      const sent = await publishAtRate(publisher, CHANNEL, o.rate, o.seconds, () => ({
        recipient_id: users[Math.floor(Math.random() * users.length)],
        type: 'bench',
      }))
      published = sent.length
      expected = sent.length // one stream per user; refused streams are counted as failed above
    }
    // In-flight deliveries land; a late duplicate would show now.
    if (o.scenario !== 'idle') await sleep(1000)
    const windowS = (performance.now() - window0) / 1000
    const cpuMs = {
      service: Math.round((cpuOf(pid) - cpu0.service) * 1000),
      redis: Math.round((cpuOf(redis.pid) - cpu0.redis) * 1000),
    }
    const got: Merged = await fleet.report()
    const result: Record<string, unknown> = {
      ...head,
      published,
      expected,
      received: got.received,
      lost: Math.max(0, expected - got.received),
      misdelivered: got.misdelivered,
      outOfOrder: got.outOfOrder,
      closedByServer: got.closed,
      latencyMs: dist(got.latencyMs, 2),
      cpuMs,
      windowS: +windowS.toFixed(1),
      cpuPer1000DeliveriesMs: got.received > 0 ? +(((cpuMs.service + cpuMs.redis) * 1000) / got.received).toFixed(1) : null,
    }
    if (o.scenario === 'broadcast') {
      const last = [...got.lastBySeq.values()]
      result.lastDeliveryMs = last.map((ms) => +ms.toFixed(1))
      result.lastDeliveryMedianMs = +median(last).toFixed(1)
    }
    if (o.scenario === 'idle') {
      result.cpuAtRestMsPerMin = Math.round(((cpuMs.service + cpuMs.redis) / windowS) * 60)
      // After the window the auth cache (30 s) has let go of the connect burst's answers.
      const rest = await restingRss(pid)
      result.rssAtRestMiB = MiB(rest)
      result.rssPerStreamAtRestKiB = opened.ok > 0 ? KiB((rest - rssBefore) / opened.ok) : null
    }
    if (service.proc.exitCode !== null) result.crashed = service.proc.exitCode
    return result
  } finally {
    publisher.disconnect()
    // The service first: its shutdown closes the streams from its side, so
    // TIME_WAIT lands on the service's port. Closed from the workers' side,
    // 19,000 TIME_WAIT sockets on their bound source addresses slowed the next
    // run's connects (bind looks for a free port among them): 7 s -> 18-25 s.
    await stopProcess(service.proc)
    await fleet.stop()
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  if (o === 'storm') {
    // The storm has its own driver (reconnects with Last-Event-ID, checks every event).
    const storm = fileURLToPath(new URL('./storm.ts', import.meta.url))
    const args = process.argv.slice(2).filter((a) => a !== 'storm')
    const r = spawnSync(process.execPath, [...process.execArgv, storm, ...args], { stdio: 'inherit' })
    process.exit(r.status ?? 1)
  }
  for (const target of o.targets) {
    const results: Record<string, unknown>[] = []
    for (let run = 1; run <= o.runs; run++) {
      const r = await runOnce(o, target, run)
      results.push(r)
      console.log(JSON.stringify(r))
    }
    if (o.runs > 1) console.log(JSON.stringify(summarize(o, target, results)))
  }
  process.exit(0)
}

/** Medians over runs of the figures BENCHMARKS.md quotes. */
function summarize(o: Options, target: Target, results: Record<string, unknown>[]): Record<string, unknown> {
  const pick = (f: (r: Record<string, unknown>) => unknown) => {
    const values = results.map(f).filter((x): x is number => typeof x === 'number' && !Number.isNaN(x))
    return values.length === 0 ? null : median(values)
  }
  const lat = (k: string) => (r: Record<string, unknown>) => (r.latencyMs as Record<string, number>)[k]
  return {
    scenario: `${o.scenario}-summary`,
    target,
    runs: results.length,
    streams: o.streams,
    failed: pick((r) => r.failed),
    connectMs: pick((r) => r.connectMs),
    rssPerStreamKiB: pick((r) => r.rssPerStreamKiB),
    lost: pick((r) => r.lost),
    misdelivered: pick((r) => r.misdelivered),
    latencyMs: { p50: pick(lat('p50')), p90: pick(lat('p90')), p99: pick(lat('p99')), max: pick(lat('max')) },
    cpuPer1000DeliveriesMs: pick((r) => r.cpuPer1000DeliveriesMs),
    ...(o.scenario === 'broadcast' && { lastDeliveryMedianMs: pick((r) => r.lastDeliveryMedianMs) }),
    ...(o.scenario === 'idle' && {
      cpuAtRestMsPerMin: pick((r) => r.cpuAtRestMsPerMin),
      rssPerStreamAtRestKiB: pick((r) => r.rssPerStreamAtRestKiB),
    }),
  }
}

if (process.argv.includes('--worker')) runWorker()
else
  main().catch((err: unknown) => {
    console.error(err instanceof UsageError ? err.message : err)
    process.exit(err instanceof UsageError ? 2 : 1)
  })
