// Publishes events at a fixed rate, each stamped with the monotonic clock
// (`t`, nanoseconds) and a sequence number, so every delivery yields a latency
// and duplicates or reordering show. Two ways to send them:
//   plain   PUBLISH on the classic channel (what every instance takes off Redis);
//   script  the build's own createPublisher (redis/publish.lua: stores in the
//           user's history and publishes; since per-user routing, on the user's
//           shard channel, which only instances with a stream of theirs take).
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Cluster, Redis } from 'ioredis'
import type { Publisher } from '../../src/publisher.js'

export interface Stamped {
  seq: number
  t: string
  [k: string]: unknown
}

export interface Sender {
  /** Sends one event; never throws (failures are counted). */
  send(event: Stamped): void
  /** Resolves once everything sent has been answered. */
  flush(): Promise<void>
  /** Sends that failed, and the first error. */
  failed: { count: number; first?: string }
}

export type PublishMode = 'plain' | 'script'

/**
 * Sends `rate` events per second for `seconds`; `make(seq)` says what (beyond
 * seq and t). Ticks every 5 ms and sends what the clock says is due, so a late
 * tick catches up instead of lowering the rate. Resolves with the events sent,
 * once every one of them has been answered.
 */
export async function publishAtRate(
  sender: Sender,
  rate: number,
  seconds: number,
  make: (seq: number) => Record<string, unknown>,
): Promise<Stamped[]> {
  const total = Math.round(rate * seconds)
  const sent: Stamped[] = []
  const start = process.hrtime.bigint()
  while (sent.length < total) {
    const due = Math.min(total, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate) + 1)
    while (sent.length < due) {
      const seq = sent.length
      const event: Stamped = { ...make(seq), seq, t: process.hrtime.bigint().toString() }
      sent.push(event)
      sender.send(event)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await sender.flush()
  return sent
}

/** PUBLISH <channel> <json> per event. */
export function plainSender(redis: Redis | Cluster, channel: string): Sender {
  const failed: Sender['failed'] = { count: 0 }
  return {
    failed,
    send: (event) => {
      redis.publish(channel, JSON.stringify(event)).catch((err: Error) => {
        failed.count++
        failed.first ??= err.message
      })
    },
    // Every PUBLISH before it has been answered (one connection, in order).
    flush: async () => void (await redis.ping()),
  }
}

/** One publisher.publish(event) per event (one EVALSHA of redis/publish.lua per event). */
export function scriptSender(publisher: Publisher): Sender {
  const failed: Sender['failed'] = { count: 0 }
  const pending = new Set<Promise<unknown>>()
  return {
    failed,
    send: (event) => {
      const p = publisher
        .publish(event as unknown as Parameters<Publisher['publish']>[0])
        .catch((err: Error) => {
          failed.count++
          failed.first ??= err.message
        })
        .finally(() => pending.delete(p))
      pending.add(p)
    },
    flush: async () => void (await Promise.all(pending)),
  }
}

export interface BuildPublisher {
  publisher: Publisher
  /** Where that build's script publishes: 'shard' (the user's own channel) or 'classic' (before per-user routing). */
  routing: 'shard' | 'classic'
  /** A plain client of the same build's ioredis, on the same Redis. */
  client: Redis | Cluster
  close(): void
}

/**
 * createPublisher of the build in `dir` (its dist/publisher.js), with a client
 * made by that build's own ioredis: the publisher tells a Cluster by
 * `instanceof`, and an older build may carry another ioredis major.
 */
export async function buildPublisher(
  dir: string,
  redis: { url?: string; seeds?: { host: string; port: number }[] },
  opts: { channel: string; historySize?: number },
): Promise<BuildPublisher> {
  const entry = join(dir, 'dist', 'publisher.js')
  if (!existsSync(entry)) throw new Error(`${entry} missing: build that tree (npm run build)`)
  const ioredis = createRequire(join(dir, 'package.json'))('ioredis') as typeof import('ioredis')
  const client: Redis | Cluster =
    redis.seeds !== undefined
      ? new ioredis.Cluster(redis.seeds, { redisOptions: { maxRetriesPerRequest: 0 } })
      : new ioredis.Redis(redis.url as string, { maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  if (client.status !== 'ready') await once(client, 'ready')
  const { createPublisher } = (await import(pathToFileURL(entry).href)) as typeof import('../../src/publisher.js')
  const publisher = createPublisher({ redis: client, channel: opts.channel, historySize: opts.historySize ?? 100 })
  const script = readFileSync(join(dir, 'redis', 'publish.lua'), 'utf8')
  return {
    publisher,
    routing: script.includes("'SPUBLISH'") ? 'shard' : 'classic',
    client,
    close: () => client.disconnect(),
  }
}
