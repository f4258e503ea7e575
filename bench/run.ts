// The benchmark harness: npm run bench -- <scenario> [options]
//
//   targeted   15,000 streams, 2,000 events/s for 20 s, each to one user
//   capacity   19,000 streams, 500 events/s for 10 s
//   broadcast  10,000 streams; one event naming all of them in recipient_ids, 5 times, 1 s apart
//   idle       15,000 streams, heartbeats only, 35 s: memory per stream and CPU at rest
//   connect    1,000 streams opened one at a time (one worker, one in flight), each
//              a new user: the time one connect takes when nothing batches it;
//              --hold=N first opens N streams of other users (four more workers)
//   routing    two instances (A, B) on one Redis, 15,000 streams all on A,
//              2,000 events/s to A's users by the publish script for 20 s: what
//              each instance pays (bench/routing.ts)
//   fleet      1, 2 and 4 instances (--instances=1,2,4) on one Redis sharing 15,000
//              streams (user i on instance i mod N) and 2,000 events/s for 20 s
//              by the publish script, each count in turn within a run: CPU per
//              1,000 deliveries summed over instances, each one's Redis intake
//              (bench/fleet.ts)
//   storm      10,000 streams reconnect at once with Last-Event-ID (bench/storm.ts)
//
// Options: --target=ours|baseline|nchan|both|all (default ours; baseline =
// bench/baseline/server.mjs, one Redis subscription per connection; nchan =
// nginx with libnginx-mod-nchan, bench/nchan/; both = ours and baseline; all =
// the three, one after the other), --runs=N (default 1), --streams=N,
// --rate=N, --seconds=N, --workers=N (default 4), --in-flight=N (streams each
// worker opens at a time, default 100), --no-bind (no 127.0.0.x source
// addresses), --publish=plain|script (plain PUBLISH on the classic channel, the
// default except for routing and fleet; or the build's createPublisher, i.e.
// redis/publish.lua: history + the user's own channel since per-user routing),
// --redis=single|cluster (one redis-server, or a local 3+3 Cluster started by the
// bench), --service=DIR (the build under test: DIR/dist/server.js and
// DIR/dist/publisher.js, e.g. a worktree of an older commit; default this
// repository), --idle-seconds=N (routing, fleet: CPU sampled at rest first, default 10),
// --instances=N,N,... (fleet: the instance counts, default 1,2,4),
// --env.KEY=VALUE (service environment), --node-args="--cpu-prof ..." (service
// node flags). Starts Redis, an auth upstream and the service itself (all on
// 127.0.0.1; every stream authenticates as its own user), or for Nchan the
// auth upstream and nginx (bench/subject.ts: what is measured, for every
// target the same way), prints one JSON line per run, then a summary line of
// medians when --runs > 1, and stops by itself.
import { spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Fleet, type Merged } from './load/fleet.js'
import { quiet } from './load/proc.js'
import { median } from './load/stats.js'
import { runWorker } from './load/worker.js'
import { deadline, REPO, startUpstream } from './lib.js'
import { startNchanSubject } from './nchan/subject.js'
import { commandsBetween, WATCHED } from './redis-topology.js'
import { connectFigures, deliveryFigures, KiB, MiB, pickMedian, publishWindow, sleep, toRandomUser } from './run-common.js'
import { type Options, parseArgs, type Target, UsageError } from './run-options.js'
import { runRouting, summarizeRouting } from './routing.js'
import { runFleet } from './fleet.js'
import { summarizeFleet } from './fleet-summary.js'
import { type Subject, startServiceSubject } from './subject.js'

/** This module: the load workers' entry (run with --worker). */
const ENTRY = fileURLToPath(import.meta.url)

async function runOnce(o: Options, target: Target, run: number): Promise<Record<string, unknown>> {
  const load1m = +(loadavg()[0] as number).toFixed(2)
  let subject: Subject | undefined
  let fleet: Fleet | undefined
  let holders: Fleet | undefined
  try {
    const upstream = await startUpstream()
    const s = (subject = target === 'nchan' ? await startNchanSubject(upstream) : await startServiceSubject(o, target, upstream))
    const streams = { bind: o.bind, openComment: s.openComment }
    fleet = await Fleet.start(ENTRY, { workers: o.workers, inFlight: o.inFlight, ...streams })
    await quiet(s.pid(), 10_000)
    // At rest, an idle service also gives back its start-up garbage (25 MiB
    // here): `idle` measures from the resting RSS, the other scenarios (which
    // measure no memory at rest) from the RSS once the CPU is quiet.
    let rssBefore = o.scenario === 'idle' ? await s.restingRss() : s.rss()
    let held: { ok: number; failed: number } | undefined
    if (o.hold > 0) {
      // Streams of other users, open before (and during) the measured connects.
      holders = await Fleet.start(ENTRY, { workers: 4, inFlight: 100, ...streams })
      const r = await holders.open(s.port, Array.from({ length: o.hold }, (_, i) => `h${i}`), 30_000)
      held = { ok: r.ok, failed: r.failed }
      await quiet(s.pid())
      rssBefore = s.rss()
    }
    const users = Array.from({ length: o.streams }, (_, i) => `u${i}`)
    const commands0 = await s.commandStats()
    const cpuConnect0 = s.cpu().service
    const t0 = performance.now()
    const opened = await fleet.open(s.port, users, 30_000)
    const connectMs = Math.round(performance.now() - t0)
    const connectCpuMs = (s.cpu().service - cpuConnect0) * 1000
    await quiet(s.pid())
    const commandsAtConnect = commandsBetween(commands0, await s.commandStats(), WATCHED)
    const rss = s.rss()
    const head = {
      scenario: o.scenario,
      target,
      run,
      redis: s.redis,
      publish: s.publish,
      ...(o.service !== resolve(REPO) && { service: o.service }),
      ...(s.measured !== undefined && { measured: s.measured }),
      load1m,
      streams: o.streams,
      ...(held !== undefined && { held }),
      ...connectFigures(opened, connectMs),
      /** Service CPU from the first connect to the last open comment, per stream (10 ms resolution in all). */
      serviceCpuPerConnectMs: opened.ok > 0 ? +(connectCpuMs / opened.ok).toFixed(3) : null,
      rssBeforeMiB: MiB(rssBefore),
      rssMiB: MiB(rss),
      rssPerStreamKiB: opened.ok > 0 ? KiB((rss - rssBefore) / opened.ok) : null,
      redisCommandsAtConnect: commandsAtConnect,
    }
    if (s.crashed() !== undefined) return { ...head, crashed: s.crashed() }
    if (o.scenario === 'connect') return head

    await fleet.measure()
    const commands1 = await s.commandStats()
    const cpu0 = s.cpu()
    let published = 0
    let expected = 0
    let windowS: number
    if (o.scenario === 'idle') {
      const window0 = performance.now()
      await sleep(o.seconds * 1000)
      windowS = (performance.now() - window0) / 1000
    } else {
      // Broadcast: one event naming every user, repeated; each repetition is timed to its last delivery.
      const make = o.scenario === 'broadcast' ? () => ({ recipient_ids: users, type: 'bench' }) : toRandomUser(users)
      const measured = await publishWindow(o, s.sender, make)
      published = measured.published
      windowS = measured.windowS
      // Broadcast: every open stream gets each event. Otherwise one stream per
      // user; refused streams are counted as failed above.
      expected = o.scenario === 'broadcast' ? published * opened.ok : published
    }
    const cpu1 = s.cpu()
    const cpuMs = {
      service: Math.round((cpu1.service - cpu0.service) * 1000),
      redis: Math.round((cpu1.redis - cpu0.redis) * 1000),
    }
    const commandsInWindow = commandsBetween(commands1, await s.commandStats(), WATCHED)
    const got: Merged = await fleet.report()
    const result: Record<string, unknown> = {
      ...head,
      ...deliveryFigures({ sender: s.sender, published, expected, got }),
      cpuMs,
      windowS: +windowS.toFixed(1),
      cpuPer1000DeliveriesMs: got.received > 0 ? +(((cpuMs.service + cpuMs.redis) * 1000) / got.received).toFixed(1) : null,
      serviceCpuPer1000DeliveriesMs: got.received > 0 ? +((cpuMs.service * 1000) / got.received).toFixed(1) : null,
      redisCommandsInWindow: commandsInWindow,
    }
    if (o.scenario === 'broadcast') {
      const last = [...got.lastBySeq.values()]
      result.lastDeliveryMs = last.map((ms) => +ms.toFixed(1))
      result.lastDeliveryMedianMs = +median(last).toFixed(1)
    }
    if (o.scenario === 'idle') {
      result.cpuAtRestMsPerMin = Math.round(((cpuMs.service + cpuMs.redis) / windowS) * 60)
      // After the window the auth cache (30 s) has let go of the connect burst's answers.
      const rest = await s.restingRss()
      result.rssAtRestMiB = MiB(rest)
      result.rssPerStreamAtRestKiB = opened.ok > 0 ? KiB((rest - rssBefore) / opened.ok) : null
    }
    const log = s.log()
    if (log.lines > 0) result.serviceLog = log
    if (s.crashed() !== undefined) result.crashed = s.crashed()
    return result
  } finally {
    // The server first (Subject.stop: TIME_WAIT lands on its side), then the load workers.
    await subject?.stop()
    await fleet?.stop()
    await holders?.stop()
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
  // Whatever happens, stop by itself: a run (a fleet run: each of its
  // instance counts) takes one to three minutes on a quiet machine; a slow
  // connect of 15,000 streams may take several more.
  const measures = o.scenario === 'fleet' ? o.instances.length : 1
  deadline(o.runs * o.targets.length * measures * (o.seconds + o.idleSeconds + 1200) * 1000, 'bench')
  const [runOne, summarizeAll] =
    o.scenario === 'routing' ? [runRouting, summarizeRouting]
    : o.scenario === 'fleet' ? [runFleet, summarizeFleet]
    : [undefined, undefined]
  for (const target of o.targets) {
    const results: Record<string, unknown>[] = []
    for (let run = 1; run <= o.runs; run++) {
      const r = runOne !== undefined ? await runOne(o, run) : await runOnce(o, target, run)
      results.push(r)
      console.log(JSON.stringify(r))
    }
    if (o.runs > 1) console.log(JSON.stringify(summarizeAll !== undefined ? summarizeAll(o, results) : summarize(o, target, results)))
  }
  process.exit(0)
}

/** Medians over runs of the figures BENCHMARKS.md quotes. */
function summarize(o: Options, target: Target, results: Record<string, unknown>[]): Record<string, unknown> {
  const pick = (f: (r: Record<string, unknown>) => unknown) => pickMedian(results, f)
  const lat = (k: string) => (r: Record<string, unknown>) => (r.latencyMs as Record<string, number>)[k]
  const conn = (k: string) => (r: Record<string, unknown>) => (r.connectTimeMs as Record<string, number>)[k]
  return {
    scenario: `${o.scenario}-summary`,
    target,
    runs: results.length,
    redis: o.redis,
    publish: results[0]?.publish,
    load1m: results.map((r) => r.load1m),
    streams: o.streams,
    failed: pick((r) => r.failed),
    connectMs: pick((r) => r.connectMs),
    connectTimeMs: { p50: pick(conn('p50')), p90: pick(conn('p90')), p99: pick(conn('p99')), max: pick(conn('max')) },
    serviceCpuPerConnectMs: pick((r) => r.serviceCpuPerConnectMs),
    rssPerStreamKiB: pick((r) => r.rssPerStreamKiB),
    ...(o.scenario !== 'connect' && {
      lost: pick((r) => r.lost),
      misdelivered: pick((r) => r.misdelivered),
      latencyMs: { p50: pick(lat('p50')), p90: pick(lat('p90')), p99: pick(lat('p99')), max: pick(lat('max')) },
      cpuPer1000DeliveriesMs: pick((r) => r.cpuPer1000DeliveriesMs),
      serviceCpuPer1000DeliveriesMs: pick((r) => r.serviceCpuPer1000DeliveriesMs),
      cpuPer1000DeliveriesMsPerRun: results.map((r) => r.cpuPer1000DeliveriesMs),
    }),
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
