// What the service needs from a broker, whichever it is: Redis (shared by every
// instance) or embedded (in-process, one instance). Both store history with the
// same semantics and feed live events to the same sink.
import type { EventEmitter } from 'node:events'
import type { Position } from '../history/event-id.js'
import type { HistoryRead, ReadRequest } from '../history/replay.js'

/** One event for one recipient, validated and serialized (see publish/batch.ts). */
export interface PublishItem {
  recipient: string
  type: string | undefined
  /** The event as one line of JSON: the SSE `data:`. */
  data: string
}

/** Where live events go. */
export interface LiveSink {
  /** A raw channel message (Redis): parsed and validated by the sink. */
  message(raw: string): void
  /** An event already validated and framed (embedded broker). */
  stored(recipient: string, position: Position | undefined, frame: Buffer): void
}

/** Emits 'up' when live delivery and history both work, 'down' when either is lost. */
export interface Broker extends EventEmitter {
  readonly kind: 'redis' | 'embedded'
  readonly up: boolean
  start(): void
  close(): Promise<void>
  /** Reads one recipient's history (see history/replay.ts). Rejects while the broker is unreachable. */
  read(request: ReadRequest): Promise<HistoryRead>
  /**
   * Stores (when history is on) and publishes each item, in order; resolves to
   * each item's event id, or null when history is off. Rejects while the broker
   * is unreachable.
   */
  publish(items: readonly PublishItem[]): Promise<(string | null)[]>
}
