// What the service needs from a broker, whichever it is: Redis (shared by every
// instance) or embedded (in-process, one instance). Both store history with the
// same semantics and feed live events to the same sink.
import { createHash } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import type { Position } from '../history/event-id.js'
import type { HistoryRead, ReadRequest } from '../history/replay.js'

/** One event for one recipient, validated and serialized (see publish/batch.ts). */
export interface PublishItem {
  /** Index of the event in its batch (0 for a single event): part of its idempotency marker. */
  event: number
  recipient: string
  type: string | undefined
  /** The event as one line of JSON: the SSE `data:`. */
  data: string
  /** Delivered to the streams open now, not stored: no id, never replayed. */
  liveOnly?: boolean
  /** Stored in place of the recipient's last stored event with this key (see redis/publish.lua). */
  collapseKey?: string
}

/** Where live events go. */
export interface LiveSink {
  /**
   * A raw channel message (Redis): parsed and validated by the sink. `own`: it
   * came on its recipient's own channel (sharded pub/sub), not the classic one.
   */
  message(raw: string, own: boolean): void
  /** An event already validated and framed (embedded broker). */
  stored(recipient: string, position: Position | undefined, frame: Buffer): void
}

/**
 * Emits 'up' when live delivery and history both work, 'down' when either is
 * lost (readiness). For streams, more precisely: 'lost' (users: string[] |
 * null) when live delivery of those users' events (null: everyone's) was lost,
 * and 'regained' (users | null) once it works again; streams of those users
 * are held from the one and caught up from history at the other.
 */
export interface Broker extends EventEmitter {
  readonly kind: 'redis' | 'embedded'
  readonly up: boolean
  /** Whether events published to `recipient` from now on reach this process. */
  live(recipient: string): boolean
  start(): void
  close(): Promise<void>
  /**
   * One more stream of `recipient` in this process. Resolves once every event
   * published to the recipient from then on is sure to reach this process
   * (resume.ts reads the history only after that); rejects if that cannot be
   * confirmed in time. Every attach is followed by one detach.
   */
  attach(recipient: string): Promise<void>
  /** One stream of `recipient` fewer; with the last one, the process stops receiving their events. */
  detach(recipient: string): void
  /** Reads one recipient's history (see history/replay.ts). Rejects while the broker is unreachable. */
  read(request: ReadRequest): Promise<HistoryRead>
  /**
   * Stores (when history is on) and publishes each item, in order; resolves to
   * each item's delivery: its event id (null when history is off) and whether
   * anyone got it live. With an idempotency key, items published before under
   * the same key are not published again (their first ids are returned, live
   * unknown). Rejects while the broker is unreachable, or with
   * IdempotencyConflict / NotReplicated (publish-script.ts).
   */
  publish(items: readonly PublishItem[], opts?: PublishOptions): Promise<Delivery[]>
  /**
   * Whether each user has a stream open anywhere (Redis: on any instance, as
   * the user's own channel's subscribers say; embedded: in this process), in
   * order. Rejects (BrokerUnavailable or a deadline) while the broker is unreachable.
   */
  presence(users: readonly string[]): Promise<Presence[]>
}

/** What publishing one item did. `null`: not known (see redis/publish.lua, "Returns"). */
export interface Delivery {
  id: string | null
  /** Someone got it live: a stream of the recipient was open (subscribed) when it was published. */
  live: boolean | null
  /** Instances holding a stream of the recipient then (embedded: 1 or 0). */
  instances: number | null
}

/** Whether a user has a stream open now; `null`: not known (Redis without sharded pub/sub). */
export interface Presence {
  online: boolean | null
  /** Instances holding a stream of the user (embedded: 1 or 0). */
  instances: number | null
}

export interface PublishOptions {
  /** The publish's idempotency key; each item's marker is `<key>:<item.event>` for its recipient. */
  idempotencyKey?: string
}

/** Nothing was sent: the broker is unreachable (disconnected, closed). Safe to retry. */
export class BrokerUnavailable extends Error {
  override name = 'BrokerUnavailable'
}

/** Sent, or perhaps sent, and no answer came: safe to retry only with the same idempotency key. */
export class OutcomeUnknown extends Error {
  override name = 'OutcomeUnknown'
}

/** The script refused a key used before for another event (same key, same recipient, other content). */
export class IdempotencyConflict extends Error {
  override name = 'IdempotencyConflict'
}

/** WAIT came back with fewer replicas than asked: the events are on the master, perhaps not yet on enough replicas. */
export class NotReplicated extends Error {
  override name = 'NotReplicated'
  constructor(
    readonly wanted: number,
    readonly got: number,
  ) {
    super(`${got} of ${wanted} replicas confirmed the write in time`)
  }
}

/**
 * What an idempotent retry must repeat: the item's type and data, and its
 * storage and collapse key when it has either, hashed as redis/publish.lua
 * does it (SHA-1 hex of `<type or ''>\n<data>[\n<store|live>\n<collapse key>]`).
 */
export function fingerprint(item: Pick<PublishItem, 'type' | 'data' | 'liveOnly' | 'collapseKey'>): string {
  const controls = item.liveOnly === true || item.collapseKey !== undefined ? `\n${item.liveOnly === true ? 'live' : 'store'}\n${item.collapseKey ?? ''}` : ''
  return createHash('sha1').update(`${item.type ?? ''}\n${item.data}${controls}`).digest('hex')
}
