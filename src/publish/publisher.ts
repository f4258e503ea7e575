// Publishing, whatever the broker: validate the whole batch, then hand the items
// over in one call. Used by POST /publish, by the in-process publisher of the
// embedded broker, and (through a Redis script runner) by createPublisher.
import type { Delivery, PublishItem, PublishOptions } from '../broker/broker.js'
import { errors } from '../errors.js'
import { type BatchLimits, prepareBatch } from './batch.js'

/** An event as publishers write it; every other field is payload. */
export type NotifyEvent = (
  | { recipient_id: string | number; recipient_ids?: never }
  | { recipient_ids: (string | number)[]; recipient_id?: never }
) & {
  type?: string
  /** Delivered to the streams open now, not stored: no id, never replayed, no history slot taken. */
  live_only?: boolean
  /** Stored in place of the recipient's last stored event with this key (`^[A-Za-z0-9_.:-]{1,128}$`). */
  collapse_key?: string
  [field: string]: unknown
}

/** What became of one (event, recipient): its id (the browser's SSE `id:`) and whether anyone got it live. */
export interface Published {
  /** Index of the event in the batch (0 for a single event). */
  event: number
  recipient_id: string
  /** Null when history is off (HISTORY_SIZE=0) or the event is live_only: delivered live, without id. */
  id: string | null
  /**
   * True: a stream of the recipient was open, somewhere in the fleet, when it
   * was published (it got the event live); false: none was. Null: not known
   * (a retry with the same idempotency key, which publishes nothing; with
   * PUBLISH_CLASSIC_COPY, when no instance of this version holds one; on a
   * Redis without sharded pub/sub). README, "Publishing".
   */
  live: boolean | null
  /** Instances that held a stream of the recipient (embedded broker: 1 or 0); null when not known. */
  instances: number | null
}

export interface Publisher {
  /**
   * Publishes one event or a batch. Throws a NOTIFY_INVALID_EVENT or
   * NOTIFY_EVENT_TOO_LARGE error (with `details.event` and `details.field`)
   * before anything is published if any event is invalid.
   *
   * `idempotencyKey` (1 to 128 visible ASCII characters): a retry of the same
   * events with the same key, within IDEMPOTENCY_TTL_S, publishes nothing new
   * and resolves to the first ids; the same key with other events throws an
   * IdempotencyConflict and publishes nothing.
   */
  publish(events: NotifyEvent | NotifyEvent[], options?: PublishOptions): Promise<Published[]>
}

export const DEFAULT_LIMITS: BatchLimits = { maxEvents: 1000, maxEventBytes: 262_144 }

export function makePublisher(
  send: (items: readonly PublishItem[], options: PublishOptions) => Promise<Delivery[]>,
  limits: BatchLimits,
): Publisher {
  return {
    async publish(events, options = {}) {
      if (options.idempotencyKey !== undefined && !isIdempotencyKey(options.idempotencyKey)) {
        throw errors.invalidIdempotencyKey()
      }
      const { items, owners } = prepareBatch(events, limits)
      const deliveries = await send(items, options)
      return owners.map((o, i) => {
        const { id = null, live = null, instances = null } = deliveries[i] ?? {}
        return { event: o.event, recipient_id: o.recipient, id, live, instances }
      })
    },
  }
}

/** An idempotency key: 1 to 128 visible ASCII characters (a UUID, say). */
export function isIdempotencyKey(key: string): boolean {
  return /^[!-~]{1,128}$/.test(key)
}
