// Per-recipient history in memory, for the embedded broker: the same rules as
// the Redis Streams the script writes (ids `<ms>-<seq>` increasing per
// recipient, at most `size` entries, expiry refreshed on write), plus a global
// bound on bytes: past it, the recipients written least recently go first.
import { formatEventId, type Position, recipientTag } from '../history/event-id.js'
import type { HistoryRead, StoredEvent } from '../history/replay.js'
import { encodeEvent } from '../sse/frame.js'

interface Log {
  entries: StoredEvent[]
  last: Position
  tag: string
  bytes: number
  expiresAt: number
}

export interface MemoryHistoryOptions {
  size: number
  ttlMs: number
  maxBytes: number
  now?: () => number
}

// What one log and one entry cost beyond their frames, roughly (objects, Map slot).
const LOG_OVERHEAD = 200
const ENTRY_OVERHEAD = 100

export class MemoryHistory {
  // Map order is write order (a written log is moved to the end), so the first
  // log is both the least recently written and the first to expire.
  readonly #logs = new Map<string, Log>()
  readonly #now: () => number
  #bytes = 0

  constructor(private readonly opts: MemoryHistoryOptions) {
    this.#now = opts.now ?? Date.now
  }

  /** Bytes held, as estimated for the bound. */
  get bytes(): number {
    return this.#bytes
  }

  get recipients(): number {
    return this.#logs.size
  }

  /** Stores one event; returns it framed with its id. */
  append(recipient: string, type: string | undefined, data: string): StoredEvent {
    const now = this.#now()
    this.#expire(now)
    let log = this.#logs.get(recipient)
    if (log === undefined) {
      log = { entries: [], last: { ms: 0, seq: 0 }, tag: recipientTag(recipient), bytes: LOG_OVERHEAD + recipient.length * 2, expiresAt: 0 }
      this.#bytes += log.bytes
    } else {
      this.#logs.delete(recipient)
    }
    this.#logs.set(recipient, log)
    // Like Redis: the clock, unless it is behind the last id; then the next sequence.
    const position = now > log.last.ms ? { ms: now, seq: 0 } : { ms: log.last.ms, seq: log.last.seq + 1 }
    const id = formatEventId(position, log.tag)
    const event = { id, position, frame: Buffer.from(encodeEvent(type === undefined ? { id, data } : { event: type, id, data })) }
    log.entries.push(event)
    log.last = position
    log.expiresAt = now + this.opts.ttlMs
    this.#grow(log, event.frame.length + ENTRY_OVERHEAD)
    while (log.entries.length > this.opts.size) this.#dropOldest(log)
    this.#bound(log)
    return event
  }

  /** Entries at or after `from` (at most size + 1) and the newest position. */
  read(recipient: string, from: Position | undefined): HistoryRead {
    this.#expire(this.#now())
    const log = this.#logs.get(recipient)
    if (log === undefined) return { range: [], tip: undefined }
    const tip = log.entries.at(-1)?.position
    if (from === undefined) return { range: [], tip }
    const start = log.entries.findIndex((e) => e.position.ms > from.ms || (e.position.ms === from.ms && e.position.seq >= from.seq))
    return { range: start < 0 ? [] : log.entries.slice(start, start + this.opts.size + 1), tip }
  }

  clear(): void {
    this.#logs.clear()
    this.#bytes = 0
  }

  #expire(now: number): void {
    for (const [recipient, log] of this.#logs) {
      // Like a Redis key: gone once its time is strictly past.
      if (log.expiresAt >= now) return
      this.#remove(recipient, log)
    }
  }

  // Over the global bound: whole recipients, least recently written first; if the
  // one just written is alone and still too big, its own oldest entries.
  #bound(current: Log): void {
    for (const [recipient, log] of this.#logs) {
      if (this.#bytes <= this.opts.maxBytes || log === current) break
      this.#remove(recipient, log)
    }
    while (this.#bytes > this.opts.maxBytes && current.entries.length > 1) this.#dropOldest(current)
  }

  #dropOldest(log: Log): void {
    const dropped = log.entries.shift()
    if (dropped !== undefined) this.#grow(log, -(dropped.frame.length + ENTRY_OVERHEAD))
  }

  #remove(recipient: string, log: Log): void {
    this.#logs.delete(recipient)
    this.#bytes -= log.bytes
  }

  #grow(log: Log, bytes: number): void {
    log.bytes += bytes
    this.#bytes += bytes
  }
}
