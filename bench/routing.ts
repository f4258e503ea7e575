// The routing scenario: two instances, A and B (separate processes), on the
// same Redis (one server, or the local Cluster with --redis=cluster); every
// stream on A; events to A's users through the build's publisher (the publish
// script: history, then the user's own shard channel). With per-user routing
// B takes nothing off Redis and its CPU stays at its idle level; A pays what a
// single instance pays. Reports each instance's CPU over the window and at
// rest, what each took off Redis (its /metrics), and A's deliveries.
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Fleet } from './load/fleet.js'
import { cpuOf, quiet } from './load/proc.js'
import { type RedisIntake, redisIntake } from './load/service-metrics.js'
import { CAPACITY, serviceScript, startService, startUpstream, stopProcess } from './lib.js'
import { commandsBetween, startTopology, WATCHED } from './redis-topology.js'
import { CHANNEL, connectFigures, deliveryFigures, makeSender, pickMedian, publishWindow, redisCpu, serviceLog, sleep, toRandomUser } from './run-common.js'
import type { Options } from './run-options.js'

type Service = { proc: ChildProcess; port: number }

export async function runRouting(o: Options, run: number): Promise<Record<string, unknown>> {
  const load1m = +(loadavg()[0] as number).toFixed(2)
  const topo = await startTopology(o.redis)
  const services: Service[] = []
  let fleet: Fleet | undefined
  let pub: Awaited<ReturnType<typeof makeSender>> | undefined
  try {
    const upstream = await startUpstream()
    const env = { ...topo.env, AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream, NOTIFY_CHANNEL: CHANNEL, ...CAPACITY, ...o.env }
    for (let i = 0; i < 2; i++) services.push(await startService(env, serviceScript(o.service), o.nodeArgs))
    const [a, b] = services as [Service, Service]
    const logs = services.map((s) => serviceLog(s.proc))
    const pidA = a.proc.pid as number
    const pidB = b.proc.pid as number
    // The bench's own process (its module is the workers' entry, like run.ts).
    fleet = await Fleet.start(fileURLToPath(new URL('./run.ts', import.meta.url)), { workers: o.workers, bind: o.bind, inFlight: o.inFlight })
    pub = await makeSender(o, topo)
    await Promise.all([quiet(pidA, 10_000), quiet(pidB, 10_000)])

    const users = Array.from({ length: o.streams }, (_, i) => `u${i}`)
    const commands0 = await topo.commandStats()
    const t0 = performance.now()
    const opened = await fleet.open(a.port, users, 30_000)
    const connectMs = Math.round(performance.now() - t0)
    await quiet(pidA)
    const commandsAtConnect = commandsBetween(commands0, await topo.commandStats(), WATCHED)

    // At rest: A with its streams (heartbeats), B with none.
    const rest0 = { a: cpuOf(pidA), b: cpuOf(pidB), redis: redisCpu(topo) }
    const restStart = performance.now()
    await sleep(o.idleSeconds * 1000)
    const restS = (performance.now() - restStart) / 1000
    const atRest = {
      a: (cpuOf(pidA) - rest0.a) * 1000 / restS,
      b: (cpuOf(pidB) - rest0.b) * 1000 / restS,
      redis: (redisCpu(topo) - rest0.redis) * 1000 / restS,
    }

    await fleet.measure()
    // Scraped outside the CPU window (a scrape costs the instance some CPU).
    const intake0 = await Promise.all([redisIntake(a.port), redisIntake(b.port)])
    const commands1 = await topo.commandStats()
    const cpu0 = { a: cpuOf(pidA), b: cpuOf(pidB), redis: redisCpu(topo) }
    const { published, windowS } = await publishWindow(o, pub.sender, toRandomUser(users))
    const cpuMs = {
      a: Math.round((cpuOf(pidA) - cpu0.a) * 1000),
      b: Math.round((cpuOf(pidB) - cpu0.b) * 1000),
      redis: Math.round((redisCpu(topo) - cpu0.redis) * 1000),
    }
    const commandsInWindow = commandsBetween(commands1, await topo.commandStats(), WATCHED)
    const intake1 = await Promise.all([redisIntake(a.port), redisIntake(b.port)])
    const got = await fleet.report()

    const instance = (k: 0 | 1, ms: number, restMsPerS: number) => {
      const before = intake0[k] as RedisIntake
      const after = intake1[k] as RedisIntake
      return {
        cpuMs: ms,
        cpuMsPerS: +(ms / windowS).toFixed(1),
        atRestCpuMsPerS: +restMsPerS.toFixed(1),
        takenOffRedis: { classic: after.classic - before.classic, user: after.user - before.user },
        userChannels: after.userChannels,
        subscriberConnections: after.subscriberConnections,
        /** Longest event-loop stall in the window (a stall over 2 s makes ioredis drop a quiet connection). */
        eventLoopLagMaxMs: after.eventLoopLagMaxMs,
        ...(logs[k]?.lines && { serviceLog: logs[k] }),
        ...(services[k]?.proc.exitCode !== null && { crashed: services[k]?.proc.exitCode }),
      }
    }
    return {
      scenario: 'routing',
      run,
      redis: o.redis,
      publish: o.publish === 'script' ? `script (${pub.routing})` : 'plain PUBLISH',
      load1m,
      streams: o.streams,
      ...connectFigures(opened, connectMs),
      redisCommandsAtConnect: commandsAtConnect,
      ...deliveryFigures({ sender: pub.sender, published, expected: published, got }),
      windowS: +windowS.toFixed(1),
      a: instance(0, cpuMs.a, atRest.a),
      b: instance(1, cpuMs.b, atRest.b),
      redisCpu: { cpuMs: cpuMs.redis, atRestCpuMsPerS: +atRest.redis.toFixed(1) },
      /** Target: B at most 5 % of A over the window. */
      bOverA: cpuMs.a > 0 ? +(cpuMs.b / cpuMs.a).toFixed(4) : null,
      /** A's usual figure (A + Redis), comparable with a single-instance `targeted` run. */
      cpuPer1000DeliveriesMs: got.received > 0 ? +(((cpuMs.a + cpuMs.redis) * 1000) / got.received).toFixed(1) : null,
      serviceCpuPer1000DeliveriesMs: got.received > 0 ? +((cpuMs.a * 1000) / got.received).toFixed(1) : null,
      redisCommandsInWindow: commandsInWindow,
    }
  } finally {
    pub?.close()
    for (const s of services) await stopProcess(s.proc)
    await fleet?.stop()
    await topo.stop()
  }
}

export function summarizeRouting(o: Options, results: Record<string, unknown>[]): Record<string, unknown> {
  type R = Record<string, any>
  const pick = (f: (r: R) => unknown) => pickMedian(results, f as (r: Record<string, unknown>) => unknown)
  const per = (f: (r: R) => unknown) => results.map((r) => f(r))
  return {
    scenario: 'routing-summary',
    runs: results.length,
    redis: o.redis,
    publish: results[0]?.publish,
    load1m: per((r) => r.load1m),
    streams: o.streams,
    failed: pick((r) => r.failed),
    connectMs: pick((r) => r.connectMs),
    lost: pick((r) => r.lost),
    misdelivered: pick((r) => r.misdelivered),
    latencyMs: { p50: pick((r) => r.latencyMs.p50), p90: pick((r) => r.latencyMs.p90), p99: pick((r) => r.latencyMs.p99), max: pick((r) => r.latencyMs.max) },
    cpuPer1000DeliveriesMs: pick((r) => r.cpuPer1000DeliveriesMs),
    serviceCpuPer1000DeliveriesMs: pick((r) => r.serviceCpuPer1000DeliveriesMs),
    a: { cpuMs: pick((r) => r.a.cpuMs), atRestCpuMsPerS: pick((r) => r.a.atRestCpuMsPerS), takenOffRedisUser: pick((r) => r.a.takenOffRedis.user), takenOffRedisClassic: pick((r) => r.a.takenOffRedis.classic) },
    b: { cpuMs: pick((r) => r.b.cpuMs), cpuMsPerS: pick((r) => r.b.cpuMsPerS), atRestCpuMsPerS: pick((r) => r.b.atRestCpuMsPerS), takenOffRedisUser: pick((r) => r.b.takenOffRedis.user), takenOffRedisClassic: pick((r) => r.b.takenOffRedis.classic) },
    redisCpuMs: pick((r) => r.redisCpu.cpuMs),
    bOverA: pick((r) => r.bOverA),
    bOverAPerRun: per((r) => r.bOverA),
  }
}
