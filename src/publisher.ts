// The typed publisher for Node services: validates like the service does and
// stores + publishes through redis/publish.lua, atomically per recipient.
//
//   import { Redis } from 'ioredis'
//   import { createPublisher } from 'notify-sse'
//   const notify = createPublisher({ redis: new Redis(process.env.REDIS_URL) })
//   const [{ id }] = await notify.publish({ recipient_id: 42, type: 'order.shipped', order: 'A-17' })
import type { Redis } from 'ioredis'
import { runPublishScript } from './broker/publish-script.js'
import { DEFAULT_LIMITS, makePublisher, type Publisher } from './publish/publisher.js'

export interface PublisherOptions {
  /** An ioredis client (not in subscriber mode). It stays yours: never closed here. */
  redis: Redis
  /** The service's NOTIFY_CHANNEL. Default `notifications`. */
  channel?: string
  /** The service's HISTORY_SIZE: entries kept per recipient; 0 = live only. Default 100. */
  historySize?: number
  /** The service's HISTORY_TTL_S. Default 86400. */
  historyTtlS?: number
  /** Most events per batch. Default 1000. */
  maxEvents?: number
  /** The service's MAX_EVENT_BYTES: larger events are refused here. Default 262144. */
  maxEventBytes?: number
}

export function createPublisher(opts: PublisherOptions): Publisher {
  const script = { channel: opts.channel ?? 'notifications', historySize: opts.historySize ?? 100, historyTtlS: opts.historyTtlS ?? 86_400 }
  return makePublisher((items) => runPublishScript(opts.redis, items, script), {
    maxEvents: opts.maxEvents ?? DEFAULT_LIMITS.maxEvents,
    maxEventBytes: opts.maxEventBytes ?? DEFAULT_LIMITS.maxEventBytes,
  })
}

export type { NotifyEvent, Published, Publisher } from './publish/publisher.js'
export { PUBLISH_SCRIPT, historyKey } from './broker/publish-script.js'
