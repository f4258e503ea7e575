// redis/publish.lua, loaded once, and the one way this package calls it: one
// EVALSHA per (event, recipient) (asking for the delivery reply), pipelined per node (one pipeline on a single
// server or a Sentinel master, one per master on a Cluster), then, when asked,
// a WAIT for replicas on the same connection. Shared by the service's Redis
// broker and by the publisher exported for Node services.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { type Delivery, fingerprint, IdempotencyConflict, NotReplicated, OutcomeUnknown, type PublishItem, type PublishOptions } from './broker.js'
import { collapseIndexKey, historyKey, idempotencyKey } from './keys.js'
import { groupByNode } from './node-groups.js'
import type { CommandClient } from './redis-clients.js'

export const PUBLISH_SCRIPT = readFileSync(new URL('../../redis/publish.lua', import.meta.url), 'utf8')
export const PUBLISH_SCRIPT_SHA = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex')

export { historyKey } from './keys.js'

/** ARGV[7]: where the script publishes (see its header). */
export type Routing = 'shard' | 'both' | 'classic'

export interface ScriptOptions {
  channel: string
  historySize: number
  historyTtlS: number
  /** Default 'shard' (per-user channels; the script falls back to 'classic' before Redis 7). */
  routing?: Routing
  /** Seconds an idempotency key is remembered. Default 600. */
  idempotencyTtlS?: number
  /** Replicas that must have the events before this resolves (WAIT). Default 0. */
  waitReplicas?: number
  /** How long WAIT waits for them, in ms. Default 1000. */
  waitTimeoutMs?: number
}

/** Runs the script for each item; resolves to what each did (id, null when history is off; live delivery). */
export async function runPublishScript(
  redis: CommandClient,
  items: readonly PublishItem[],
  opts: ScriptOptions,
  publish: PublishOptions = {},
): Promise<Delivery[]> {
  const deliveries: Delivery[] = new Array(items.length).fill(UNKNOWN)
  const keys = items.map((item) => historyKey(opts.channel, item.recipient))
  const groups = groupByNode(redis, keys)
  if (publish.idempotencyKey !== undefined) await refuseConflicts(redis, items, groups, opts.channel, publish.idempotencyKey)
  const settled = await Promise.allSettled(groups.map((group) => runGroup(redis, items, group, opts, publish, deliveries)))
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed !== undefined) {
    // One node's part failed while another's was published: whatever the
    // error says about its own part, the batch as a whole is half done.
    if (settled.some((r) => r.status === 'fulfilled')) {
      throw new OutcomeUnknown(`part of the batch was published: ${(failed.reason as Error).message}`)
    }
    throw failed.reason
  }
  const acked = settled.map((r) => (r as PromiseFulfilledResult<number>).value)
  const wanted = opts.waitReplicas ?? 0
  const least = Math.min(...acked)
  if (wanted > 0 && least < wanted) throw new NotReplicated(wanted, least)
  return deliveries
}

const UNKNOWN: Delivery = { id: null, live: null, instances: null }

/**
 * The script's 'delivery' reply (redis/publish.lua, "Returns"): SPUBLISH's
 * count is the instances holding the recipient's channel; with the classic
 * copy, instances of an older version are not counted (0 says nothing); on
 * the classic channel alone, or for a retry that published nothing, nobody knows.
 */
export function deliveryOf(reply: unknown): Delivery {
  const [rawId, rawInstances, route] = reply as [string | null, number | null, string]
  const id = rawId ?? null
  const instances = rawInstances === null ? null : Number(rawInstances)
  if (route === 'shard' && instances !== null) return { id, live: instances > 0, instances }
  if (route === 'both' && instances !== null) return { id, live: instances > 0 ? true : null, instances }
  return { id, live: null, instances: null }
}

/**
 * A key reused for other events is refused before anything is published: the
 * script checks each item atomically, but a batch that conflicts on one item
 * would already have published the others.
 */
async function refuseConflicts(redis: CommandClient, items: readonly PublishItem[], groups: number[][], channel: string, key: string): Promise<void> {
  await Promise.all(
    groups.map(async (group) => {
      const pipeline = redis.pipeline()
      for (const i of group) {
        const item = items[i] as PublishItem
        pipeline.get(idempotencyKey(channel, item.recipient, `${key}:${item.event}`))
      }
      const results = (await pipeline.exec()) ?? []
      group.forEach((i, k) => {
        const [err, seen] = results[k] ?? [new Error('no reply')]
        if (err) throw err
        // The marker is `<fingerprint> <id>` (redis/publish.lua).
        if (typeof seen === 'string' && seen.slice(0, 40) !== fingerprint(items[i] as PublishItem)) {
          throw new IdempotencyConflict('this idempotency key was used for another event')
        }
      })
    }),
  )
}

/** One node's items, in one pipeline; resolves to the replicas WAIT counted (Infinity without WAIT). */
async function runGroup(
  redis: CommandClient,
  items: readonly PublishItem[],
  group: number[],
  opts: ScriptOptions,
  publish: PublishOptions,
  deliveries: Delivery[],
): Promise<number> {
  const wait = opts.waitReplicas ?? 0
  let todo = group
  let replicas = Infinity
  for (let attempt = 0; todo.length > 0; attempt++) {
    const pipeline = redis.pipeline()
    // A node without the script (restarted, SCRIPT FLUSH, a master just added)
    // answers NOSCRIPT: rerun only what did not run, as EVAL, which also caches
    // it there. Calls that ran are never rerun: no duplicates. EVAL rather than
    // SCRIPT LOAD + EVALSHA: on a Cluster, ioredis follows an ASK (a slot
    // half-moved, the script wanted on the destination) only for a pipeline
    // in which no write succeeded, and a SCRIPT LOAD answered by the source is one.
    for (const i of todo) {
      const { keys, args } = scriptArgs(items[i] as PublishItem, opts, publish)
      if (attempt === 0) pipeline.evalsha(PUBLISH_SCRIPT_SHA, keys.length, ...keys, ...args)
      else pipeline.eval(PUBLISH_SCRIPT, keys.length, ...keys, ...args)
    }
    // WAIT covers every write this connection made before it: the whole pipeline.
    if (wait > 0) pipeline.wait(wait, opts.waitTimeoutMs ?? 1000)
    const results = (await pipeline.exec()) ?? []
    const again: number[] = []
    todo.forEach((itemIndex, k) => {
      const [err, reply] = results[k] ?? [new Error('no reply')]
      if (err && attempt === 0 && err.message.startsWith('NOSCRIPT')) again.push(itemIndex)
      else if (err?.message.startsWith('NOTIFY_IDEMPOTENCY_CONFLICT')) throw new IdempotencyConflict(err.message)
      else if (err) throw err
      else deliveries[itemIndex] = deliveryOf(reply)
    })
    if (wait > 0) {
      const [err, n] = results[todo.length] ?? [new Error('no reply to WAIT')]
      if (err) throw err
      replicas = Math.min(replicas, Number(n))
    }
    todo = again
  }
  return replicas
}

/** KEYS and ARGV of one call, as documented at the top of redis/publish.lua. */
function scriptArgs(item: PublishItem, opts: ScriptOptions, publish: PublishOptions): { keys: string[]; args: (string | number)[] } {
  const token = publish.idempotencyKey === undefined ? '' : `${publish.idempotencyKey}:${item.event}`
  const keys = [historyKey(opts.channel, item.recipient)]
  if (token !== '') keys.push(idempotencyKey(opts.channel, item.recipient, token))
  // Only with a collapse key: a call of one key is served during a Cluster slot migration (ASK), one of several is not (TRYAGAIN).
  if (item.collapseKey) keys.push(collapseIndexKey(opts.channel, item.recipient))
  const args = [opts.channel, item.recipient, item.type ?? '', item.data, opts.historySize, opts.historyTtlS]
  const controls = [item.liveOnly === true ? 'live' : 'store', item.collapseKey ?? '']
  return { keys, args: [...args, opts.routing ?? 'shard', token, opts.idempotencyTtlS ?? 600, ...controls, 'delivery'] }
}
