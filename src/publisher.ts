// The typed publisher for Node services: validates like the service does and
// stores + publishes through redis/publish.lua, atomically per recipient, on a
// single server, a Sentinel master or a Redis Cluster (pipelined per node).
//
//   import { Redis } from 'ioredis'
//   import { createPublisher } from 'notify-sse'
//   const notify = createPublisher({ redis: new Redis(process.env.REDIS_URL) })
//   const [{ id }] = await notify.publish({ recipient_id: 42, type: 'order.shipped', order: 'A-17' })
import type { Cluster, Redis } from 'ioredis'
import { runPublishScript } from './broker/publish-script.js'
import { DEFAULT_LIMITS, makePublisher, type Publisher } from './publish/publisher.js'

export interface PublisherOptions {
  /**
   * An ioredis client (not in subscriber mode): a Redis (one server, or a
   * Sentinel master) or a Cluster. It stays yours: never closed here. Give it a
   * `commandTimeout`, and keep `maxRetriesPerRequest: 0` (Redis) or
   * `retryDelayOnFailover: 0` (Cluster) so that ioredis never resends a publish
   * whose answer was lost; retry yourself with an idempotency key instead.
   */
  redis: Redis | Cluster
  /** The service's NOTIFY_CHANNEL. Default `notifications`. */
  channel?: string
  /** The service's HISTORY_SIZE: entries kept per recipient; 0 = live only. Default 100. */
  historySize?: number
  /** The service's HISTORY_TTL_S. Default 86400. */
  historyTtlS?: number
  /** The service's IDEMPOTENCY_TTL_S: how long an idempotency key is remembered. Default 600. */
  idempotencyTtlS?: number
  /** The service's PUBLISH_CLASSIC_COPY (rolling upgrade from a version without per-user routing). Default false. */
  classicCopy?: boolean
  /** Resolve only once this many replicas have the events (WAIT); short of them, throw NotReplicated. Default 0. */
  waitReplicas?: number
  /** How long to wait for them, in ms. Default 1000. */
  waitTimeoutMs?: number
  /** Most events per batch. Default 1000. */
  maxEvents?: number
  /** The service's MAX_EVENT_BYTES: larger events are refused here. Default 262144. */
  maxEventBytes?: number
}

export function createPublisher(opts: PublisherOptions): Publisher {
  const script = {
    channel: opts.channel ?? 'notifications',
    historySize: opts.historySize ?? 100,
    historyTtlS: opts.historyTtlS ?? 86_400,
    routing: opts.classicCopy === true ? ('both' as const) : ('shard' as const),
    idempotencyTtlS: opts.idempotencyTtlS ?? 600,
    waitReplicas: opts.waitReplicas ?? 0,
    waitTimeoutMs: opts.waitTimeoutMs ?? 1000,
  }
  return makePublisher((items, options) => runPublishScript(opts.redis, items, script, options), {
    maxEvents: opts.maxEvents ?? DEFAULT_LIMITS.maxEvents,
    maxEventBytes: opts.maxEventBytes ?? DEFAULT_LIMITS.maxEventBytes,
  })
}

export type { NotifyEvent, Published, Publisher } from './publish/publisher.js'
export type { PublishOptions } from './broker/broker.js'
export { IdempotencyConflict, NotReplicated } from './broker/broker.js'
export { PUBLISH_SCRIPT } from './broker/publish-script.js'
export { collapseIndexKey, historyKey, idempotencyKey, liveChannel } from './broker/keys.js'
