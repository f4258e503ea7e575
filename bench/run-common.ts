// Pieces the scenarios of bench/run.ts share (single instance, routing and fleet).
import type { ChildProcess } from 'node:child_process'
import { Cluster, Redis } from 'ioredis'
import type { Fleet, Merged } from './load/fleet.js'
import { cpuOf } from './load/proc.js'
import { buildPublisher, plainSender, publishAtRate, scriptSender, type Sender } from './load/publisher.js'
import { dist, median } from './load/stats.js'
import type { Topology } from './redis-topology.js'
import type { Options } from './run-options.js'

export const CHANNEL = 'notifications'
export const KiB = (b: number) => +(b / 1024).toFixed(1)
export const MiB = (b: number) => +(b / 2 ** 20).toFixed(1)
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** CPU seconds of every Redis process of the topology. */
export const redisCpu = (topo: Topology) => topo.pids().reduce((a, pid) => a + cpuOf(pid), 0)

/** Where a run publishes: plain PUBLISH (this repository's ioredis) or the build's own publisher. */
export async function makeSender(o: Options, topo: Topology): Promise<{ sender: Sender; routing: string; close(): void }> {
  if (o.publish === 'script') {
    const built = await buildPublisher(o.service, topo, { channel: CHANNEL })
    return { sender: scriptSender(built.publisher), routing: built.routing, close: built.close }
  }
  const client = topo.seeds !== undefined ? new Cluster(topo.seeds) : new Redis(topo.url as string)
  client.on('error', () => {})
  return { sender: plainSender(client, CHANNEL), routing: 'classic', close: () => client.disconnect() }
}

/** Drains a service's stdout (a full pipe would block its logger) and keeps a few lines as evidence. */
export function serviceLog(proc: ChildProcess): { lines: number; first: string[] } {
  const log = { lines: 0, first: [] as string[] }
  proc.stdout?.setEncoding('utf8')
  proc.stdout?.on('data', (d: string) => {
    for (const line of d.split('\n')) {
      if (line === '') continue
      log.lines++
      if (log.first.length < 3) log.first.push(line.slice(0, 300))
    }
  })
  return log
}

/** Median over runs of one figure (null when no run has it). */
export function pickMedian(results: Record<string, unknown>[], f: (r: Record<string, unknown>) => unknown): number | null {
  const values = results.map((r) => {
    try {
      return f(r)
    } catch {
      return undefined
    }
  }).filter((x): x is number => typeof x === 'number' && !Number.isNaN(x))
  return values.length === 0 ? null : median(values)
}

/** Events each to one random user of `users` (one stream each): the targeted load. */
export function toRandomUser(users: string[]): () => Record<string, unknown> {
  return () => ({ recipient_id: users[Math.floor(Math.random() * users.length)], type: 'bench' })
}

/**
 * A measured window: `make`'s events at --rate for --seconds, then one second
 * more for in-flight deliveries to land (a late duplicate would show then).
 * Returns how many were published and the window's length; the caller reads
 * CPU and Redis figures on either side.
 */
export async function publishWindow(o: Options, sender: Sender, make: () => Record<string, unknown>): Promise<{ published: number; windowS: number }> {
  const window0 = performance.now()
  const sent = await publishAtRate(sender, o.rate, o.seconds, make)
  await sleep(1000)
  return { published: sent.length, windowS: (performance.now() - window0) / 1000 }
}

/** One `Fleet.open` answer: the streams of one call (one instance's share, or all of them). */
export type Opened = Awaited<ReturnType<Fleet['open']>>

/**
 * The connect figures of a result, from the answers of the `Fleet.open` calls
 * that opened a run's streams (one per instance when several share them) and
 * the wall time they took together.
 */
export function connectFigures(opened: Opened | Opened[], connectMs: number) {
  const all = Array.isArray(opened) ? opened : [opened]
  const failed = all.reduce((a, r) => a + r.failed, 0)
  return {
    connected: all.reduce((a, r) => a + r.ok, 0),
    failed,
    // At most five reasons, as one `Fleet.open` answer gives.
    ...(failed > 0 && { failures: all.flatMap((r) => r.failures).slice(0, 5) }),
    connectMs,
    connectTimeMs: dist(all.flatMap((r) => r.connectTimesMs), 2),
  }
}

/**
 * The delivery figures of a result: what the window published (`published`
 * events, `expected` deliveries of them) against what the workers got. The
 * window's length and CPU stay with each scenario, which splits CPU its own way.
 */
export function deliveryFigures(w: { sender: Sender; published: number; expected: number; got: Merged }) {
  return {
    published: w.published,
    ...(w.sender.failed.count > 0 && { publishFailed: w.sender.failed }),
    expected: w.expected,
    received: w.got.received,
    lost: Math.max(0, w.expected - w.got.received),
    misdelivered: w.got.misdelivered,
    outOfOrder: w.got.outOfOrder,
    closedByServer: w.got.closed,
    latencyMs: dist(w.got.latencyMs, 2),
  }
}
