// Pieces the scenarios of bench/run.ts share (single instance and routing).
import type { ChildProcess } from 'node:child_process'
import { Cluster, Redis } from 'ioredis'
import { cpuOf } from './load/proc.js'
import { buildPublisher, plainSender, scriptSender, type Sender } from './load/publisher.js'
import { median } from './load/stats.js'
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

