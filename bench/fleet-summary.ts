// The fleet scenario's verdicts: each run's ratio of the largest instance
// count's CPU per 1,000 deliveries to the smallest's, and over --runs the
// medians of every count (bench/fleet.ts measures the counts).
import { pickMedian } from './run-common.js'
import type { Options } from './run-options.js'

type R = Record<string, any>

/** The target: the largest count's CPU per 1,000 deliveries at most 15 % above the smallest's. */
const TARGET_RATIO = 1.15
/** What each count's `redisIntake` should show, said in every line. */
export const INTAKE_EXPECTED = 'per-user routing: each instance takes about published / N (fairShare) off Redis; the sum over instances equals published'

/**
 * The largest count's CPU figures over the smallest's (ratio4to1 by default),
 * from the medians over `runs` (each run: its `counts`), and run by run.
 */
export function ratios(o: Options, runs: R[][]): Record<string, unknown> {
  const lo = Math.min(...o.instances)
  const hi = Math.max(...o.instances)
  if (lo === hi) return {}
  const figure = (n: number, key: string) => pickMedian(runs.map((counts) => counts.find((c) => c.instances === n) ?? {}), (c) => c[key])
  const ratio = (key: string) => {
    const a = figure(hi, key)
    const b = figure(lo, key)
    return a === null || b === null || b === 0 ? null : +(a / b).toFixed(3)
  }
  const cpu = ratio('cpuPer1000DeliveriesMs')
  const service = ratio('serviceCpuPer1000DeliveriesMs')
  return {
    [`ratio${hi}to${lo}`]: {
      cpuPer1000DeliveriesMs: cpu,
      serviceCpuPer1000DeliveriesMs: service,
      target: `<= ${TARGET_RATIO}`,
      met: { cpu: cpu !== null && cpu <= TARGET_RATIO, service: service !== null && service <= TARGET_RATIO },
    },
  }
}

export function summarizeFleet(o: Options, results: Record<string, unknown>[]): Record<string, unknown> {
  const runs = results.map((r) => r.counts as R[])
  const counts = o.instances.map((n) => {
    const mine = runs.map((counts) => counts.find((c) => c.instances === n)).filter((c): c is R => c !== undefined)
    // Rounded: the median of an even number of runs is a mean (26.689999999999998).
    const pick = (f: (c: R) => unknown) => {
      const m = pickMedian(mine, f as (c: Record<string, unknown>) => unknown)
      return m === null ? null : +m.toFixed(2)
    }
    return {
      instances: n,
      cpuPer1000DeliveriesMs: pick((c) => c.cpuPer1000DeliveriesMs),
      serviceCpuPer1000DeliveriesMs: pick((c) => c.serviceCpuPer1000DeliveriesMs),
      cpuPer1000DeliveriesMsPerRun: mine.map((c) => c.cpuPer1000DeliveriesMs),
      serviceCpuPer1000DeliveriesMsPerRun: mine.map((c) => c.serviceCpuPer1000DeliveriesMs),
      cpuMs: { instances: pick((c) => c.cpuMs.instances), redis: pick((c) => c.cpuMs.redis) },
      atRestCpuMsPerS: { instances: pick((c) => c.atRestCpuMsPerS.instances), redis: pick((c) => c.atRestCpuMsPerS.redis) },
      redisIntake: {
        largest: pick((c) => c.redisIntake.largest),
        fairShare: pick((c) => c.redisIntake.fairShare),
        sum: pick((c) => c.redisIntake.sum),
        published: pick((c) => c.redisIntake.published),
        sumEqualsPublishedInEveryRun: mine.every((c) => c.redisIntake.sumEqualsPublished),
      },
      failed: pick((c) => c.failed),
      lost: pick((c) => c.lost),
      misdelivered: pick((c) => c.misdelivered),
      outOfOrder: pick((c) => c.outOfOrder),
      latencyMs: { p50: pick((c) => c.latencyMs.p50), p90: pick((c) => c.latencyMs.p90), p99: pick((c) => c.latencyMs.p99) },
      connectMs: pick((c) => c.connectMs),
    }
  })
  const largest = [...counts].sort((a, b) => a.instances - b.instances).map((c) => c.redisIntake.largest ?? NaN)
  const summary = ratios(o, runs)
  const ratioKey = Object.keys(summary)[0]
  const perRun = (key: string) => runs.map((r) => (ratios(o, [r])[ratioKey as string] as R)[key])
  return {
    scenario: 'fleet-summary',
    runs: results.length,
    redis: o.redis,
    publish: results[0]?.publish,
    load1m: results.map((r) => r.load1m),
    streams: o.streams,
    rate: o.rate,
    seconds: o.seconds,
    redisIntakeExpected: INTAKE_EXPECTED,
    counts,
    /** Target: no instance's intake grows with the number of instances. */
    largestIntakeNeverGrows: largest.every((x, i) => i === 0 || x <= (largest[i - 1] as number)),
    ...(ratioKey !== undefined && {
      [ratioKey]: {
        ...(summary[ratioKey] as R),
        perRun: { cpuPer1000DeliveriesMs: perRun('cpuPer1000DeliveriesMs'), serviceCpuPer1000DeliveriesMs: perRun('serviceCpuPer1000DeliveriesMs') },
      },
    }),
  }
}
