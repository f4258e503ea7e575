// The fleet scenario: the same streams and the same events on 1, 2 and 4
// instances (separate processes) of one machine, on one Redis (a server, or
// the local Cluster with --redis=cluster). User i's stream is on instance
// i mod N; events go to random users through the build's publisher (the
// publish script: history, then the user's own shard channel), so with
// per-user routing each instance takes about 1/N of them off Redis and the
// instances together take each event once. What is measured: CPU per 1,000
// deliveries summed over the instances (with and without Redis), which should
// not grow with N, and each instance's Redis intake, which should shrink as 1/N.
//
// One run measures every count in turn, so that a noisy moment of the shared
// machine falls on all counts of a run alike. Each count gets its own Redis,
// service processes and load workers: every count starts from an empty
// keyspace (the previous count's 40,000 stored events would make the next
// count's publishes and connects work on longer histories) and fresh
// processes, at the price of a few seconds per count (a Cluster forms in
// about two). The auth upstream is stateless and shared by the counts of a run.
// The ratios and the summary over runs: bench/fleet-summary.ts.
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { INTAKE_EXPECTED, ratios } from './fleet-summary.js'
import { Fleet } from './load/fleet.js'
import { cpuOf, quiet, switchesOf } from './load/proc.js'
import { type RedisIntake, redisIntake } from './load/service-metrics.js'
import { CAPACITY, serviceScript, startService, startUpstream, stopProcess } from './lib.js'
import { commandsBetween, startTopology, WATCHED } from './redis-topology.js'
import { CHANNEL, connectFigures, deliveryFigures, makeSender, type Opened, publishWindow, redisCpu, serviceLog, sleep, toRandomUser } from './run-common.js'
import type { Options } from './run-options.js'

type Service = { proc: ChildProcess; port: number }
type R = Record<string, any>

export async function runFleet(o: Options, run: number): Promise<Record<string, unknown>> {
  const load1m = +(loadavg()[0] as number).toFixed(2)
  const upstream = await startUpstream()
  const counts: R[] = []
  for (const n of o.instances) counts.push(await measureCount(o, n, upstream))
  return {
    scenario: 'fleet',
    run,
    redis: o.redis,
    publish: counts[0]?.publish,
    load1m,
    streams: o.streams,
    rate: o.rate,
    seconds: o.seconds,
    redisIntakeExpected: INTAKE_EXPECTED,
    counts,
    ...ratios(o, [counts]),
  }
}

async function measureCount(o: Options, n: number, upstream: string): Promise<R> {
  const started = performance.now()
  const topo = await startTopology(o.redis)
  const services: Service[] = []
  let fleet: Fleet | undefined
  let pub: Awaited<ReturnType<typeof makeSender>> | undefined
  try {
    const env = { ...topo.env, AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream, NOTIFY_CHANNEL: CHANNEL, ...CAPACITY, ...o.env }
    for (let i = 0; i < n; i++) services.push(await startService(env, serviceScript(o.service), o.nodeArgs))
    const logs = services.map((s) => serviceLog(s.proc))
    const pids = services.map((s) => s.proc.pid as number)
    // The bench's own process (its module is the workers' entry, like run.ts).
    fleet = await Fleet.start(fileURLToPath(new URL('./run.ts', import.meta.url)), { workers: o.workers, bind: o.bind, inFlight: o.inFlight })
    pub = await makeSender(o, topo)
    await Promise.all(pids.map((pid) => quiet(pid, 10_000)))

    const users = Array.from({ length: o.streams }, (_, i) => `u${i}`)
    const shares = services.map((_, k) => users.filter((_, i) => i % n === k))
    const commands0 = await topo.commandStats()
    const t0 = performance.now()
    // One instance after the other: each call adds its streams to the workers'.
    const opened: Opened[] = []
    for (const [k, s] of services.entries()) opened.push(await fleet.open(s.port, shares[k] as string[], 30_000))
    const connectMs = Math.round(performance.now() - t0)
    await Promise.all(pids.map((pid) => quiet(pid)))
    const commandsAtConnect = commandsBetween(commands0, await topo.commandStats(), WATCHED)

    // At rest (heartbeats only): what each instance costs before any event,
    // part of every CPU figure of the window, N times over with N instances.
    const rest0 = { instances: pids.map(cpuOf), redis: redisCpu(topo) }
    const restStart = performance.now()
    await sleep(o.idleSeconds * 1000)
    const restS = o.idleSeconds > 0 ? (performance.now() - restStart) / 1000 : NaN
    const restMsPerS = pids.map((pid, k) => ((cpuOf(pid) - (rest0.instances[k] as number)) * 1000) / restS)
    const restRedisMsPerS = ((redisCpu(topo) - rest0.redis) * 1000) / restS

    await fleet.measure()
    // Scraped outside the CPU window (a scrape costs the instance some CPU).
    const intake0 = await Promise.all(services.map((s) => redisIntake(s.port)))
    const commands1 = await topo.commandStats()
    const cpu0 = { instances: pids.map(cpuOf), redis: redisCpu(topo) }
    const switches0 = pids.map(switchesOf)
    const { published, windowS } = await publishWindow(o, pub.sender, toRandomUser(users))
    const instanceCpuMs = pids.map((pid, k) => Math.round((cpuOf(pid) - (cpu0.instances[k] as number)) * 1000))
    const switches = pids.map((pid, k) => {
      const [a, b] = [switches0[k] as ReturnType<typeof switchesOf>, switchesOf(pid)]
      return { voluntary: b.voluntary - a.voluntary, involuntary: b.involuntary - a.involuntary }
    })
    const redisCpuMs = Math.round((redisCpu(topo) - cpu0.redis) * 1000)
    const commandsInWindow = commandsBetween(commands1, await topo.commandStats(), WATCHED)
    const intake1 = await Promise.all(services.map((s) => redisIntake(s.port)))
    const got = await fleet.report()

    const instances = services.map((s, k) => {
      const before = intake0[k] as RedisIntake
      const after = intake1[k] as RedisIntake
      const taken = { user: after.user - before.user, classic: after.classic - before.classic }
      return {
        streams: opened[k]?.ok,
        cpuMs: instanceCpuMs[k] as number,
        cpuMsPerS: +((instanceCpuMs[k] as number) / windowS).toFixed(1),
        atRestCpuMsPerS: +(restMsPerS[k] as number).toFixed(1),
        takenOffRedis: { ...taken, total: total(taken) },
        userChannels: after.userChannels,
        subscriberConnections: after.subscriberConnections,
        /** Longest event-loop stall in the window (a stall over 2 s makes ioredis drop a quiet connection). */
        eventLoopLagMaxMs: after.eventLoopLagMaxMs,
        ...(logs[k]?.lines && { serviceLog: logs[k] }),
        ...(s.proc.exitCode !== null && { crashed: s.proc.exitCode }),
      }
    })
    const serviceCpuMs = instanceCpuMs.reduce((a, b) => a + b, 0)
    const intakes = instances.map((i) => i.takenOffRedis.total)
    const intakeSum = intakes.reduce((a, b) => a + b, 0)
    const per1000 = (ms: number) => (got.received > 0 ? +((ms * 1000) / got.received).toFixed(1) : null)
    return {
      instances: n,
      publish: o.publish === 'script' ? `script (${pub.routing})` : 'plain PUBLISH',
      ...connectFigures(opened, connectMs),
      redisCommandsAtConnect: commandsAtConnect,
      // One stream per user; refused streams are counted as failed.
      ...deliveryFigures({ sender: pub.sender, published, expected: published, got }),
      windowS: +windowS.toFixed(1),
      cpuMs: { instances: serviceCpuMs, redis: redisCpuMs },
      /** Summed over the instances; --idle-seconds=0 skips it. */
      atRestCpuMsPerS: { instances: +restMsPerS.reduce((a, b) => a + b, 0).toFixed(1), redis: +restRedisMsPerS.toFixed(1) },
      /** Every instance and every Redis process, per 1,000 deliveries. */
      cpuPer1000DeliveriesMs: per1000(serviceCpuMs + redisCpuMs),
      serviceCpuPer1000DeliveriesMs: per1000(serviceCpuMs),
      /**
       * Context switches of the instances per 1,000 deliveries: voluntary ones
       * count event-loop wake-ups (each pays the loop's fixed cost, and fewer
       * events per wake-up spread it over fewer deliveries).
       */
      switchesPer1000Deliveries: {
        voluntary: per1000(switches.reduce((a, x) => a + x.voluntary, 0)),
        involuntary: per1000(switches.reduce((a, x) => a + x.involuntary, 0)),
      },
      redisIntake: {
        largest: Math.max(...intakes),
        fairShare: Math.round(published / n),
        sum: intakeSum,
        published,
        sumEqualsPublished: intakeSum === published,
      },
      perInstance: instances,
      redisCommandsInWindow: commandsInWindow,
      /** Wall time of this count, from starting Redis to here (the stops not counted). */
      wallS: Math.round((performance.now() - started) / 1000),
    }
  } finally {
    pub?.close()
    // The services first: their shutdown closes the streams from their side
    // (TIME_WAIT on the services' ports, not on the workers' bound addresses).
    for (const s of services) await stopProcess(s.proc)
    await fleet?.stop()
    await topo.stop()
  }
}

/** Events taken off Redis on both kinds of channel (NaN when the build reports neither). */
function total(taken: { user: number; classic: number }): number {
  const known = [taken.user, taken.classic].filter((x) => !Number.isNaN(x))
  return known.length === 0 ? NaN : known.reduce((a, b) => a + b, 0)
}
