// Per-recipient history in memory, for the embedded broker: the same rules as
// the Redis Streams the script writes (ids `<ms>-<seq>` increasing per
// recipient, at most `size` entries, expiry refreshed on write, collapse keys
// with the same bookkeeping), plus a global bound on bytes: past it, the
// recipients written least recently go first.
import { formatEntryId, formatEventId, parseEntryId, type Position, recipientTag, samePosition, START } from '../history/event-id.js'
import type { HistoryRead, StoredEvent } from '../history/replay.js'
import { encodeEvent } from '../sse/frame.js'

interface Log {
  entries: StoredEvent[]
  last: Position
  tag: string
  bytes: number
  expiresAt: number
  /** The newest position dropped to keep the log within its bounds; START for none. */
  trimmed: Position
  /**
   * From the first collapse key on: key -> the entry ids of its latest event
   * and of those it replaced, newest first (the script's collapse index).
   */
  keys?: Map<string, string>
}

/** Ids a replacing entry lists at most, as redis/publish.lua (REPLACED_KEPT). */
const REPLACED_KEPT = 100

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

  /**
   * Stores one event; returns it framed with its id. With a collapse key, the
   * recipient's last stored event with that key is removed.
   */
  append(recipient: string, type: string | undefined, data: string, collapseKey?: string): StoredEvent {
    const now = this.#now()
    this.#expire(now)
    let log = this.#logs.get(recipient)
    if (log === undefined) {
      log = { entries: [], last: START, tag: recipientTag(recipient), bytes: LOG_OVERHEAD + recipient.length * 2, expiresAt: 0, trimmed: START }
      this.#bytes += log.bytes
    } else {
      this.#logs.delete(recipient)
    }
    this.#logs.set(recipient, log)
    const replaced = collapseKey === undefined ? undefined : this.#replace(log, collapseKey)
    // Like Redis: the clock, unless it is behind the last id; then the next sequence.
    const position = now > log.last.ms ? { ms: now, seq: 0 } : { ms: log.last.ms, seq: log.last.seq + 1 }
    const id = formatEventId(position, log.tag)
    const frame = Buffer.from(encodeEvent(type === undefined ? { id, data } : { event: type, id, data }))
    const event: StoredEvent = { id, position, frame, ...(replaced !== undefined && { replaced }) }
    log.entries.push(event)
    log.last = position
    log.expiresAt = now + this.opts.ttlMs
    this.#grow(log, cost(event))
    while (log.entries.length > this.opts.size) this.#dropOldest(log)
    if (collapseKey !== undefined) this.#index(log, collapseKey, event)
    this.#bound(log)
    return event
  }

  /** Entries at or after `from` (at most size + 1), the newest position, and (once it uses collapse keys) what was trimmed. */
  read(recipient: string, from: Position | undefined): HistoryRead {
    this.#expire(this.#now())
    const log = this.#logs.get(recipient)
    if (log === undefined) return { range: [], tip: undefined }
    const tip = log.entries.at(-1)?.position
    if (from === undefined) return { range: [], tip }
    const start = log.entries.findIndex((e) => e.position.ms > from.ms || (e.position.ms === from.ms && e.position.seq >= from.seq))
    const range = start < 0 ? [] : log.entries.slice(start, start + this.opts.size + 1)
    return { range, tip, ...(log.keys !== undefined && { trimmed: log.trimmed }) }
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
    if (dropped === undefined) return
    log.trimmed = dropped.position
    this.#grow(log, -cost(dropped))
  }

  /** Removes the key's last event, if still stored; returns the ids the new one replaces. */
  #replace(log: Log, key: string): string | undefined {
    log.keys ??= new Map()
    const last = log.keys.get(key)
    if (last === undefined) return undefined
    const position = parseEntryId(firstIds(last, 1))
    const at = position === undefined ? -1 : log.entries.findIndex((e) => samePosition(e.position, position))
    // Trimmed already: nothing to replace (`trimmed` tells readers).
    if (at < 0) return undefined
    const [removed] = log.entries.splice(at, 1)
    if (removed !== undefined) this.#grow(log, -cost(removed))
    return firstIds(last, REPLACED_KEPT)
  }

  /** Records the key's new latest event; drops keys whose event was trimmed once there are more than twice `size`. */
  #index(log: Log, key: string, event: StoredEvent): void {
    const keys = (log.keys ??= new Map())
    const entryId = formatEntryId(event.position)
    keys.set(key, event.replaced === undefined ? entryId : `${entryId} ${event.replaced}`)
    if (keys.size <= 2 * this.opts.size) return
    const live = new Set(log.entries.map((e) => formatEntryId(e.position)))
    for (const [k, ids] of keys) if (!live.has(firstIds(ids, 1))) keys.delete(k)
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

/** What an entry costs the byte bound, roughly (its replaced ids twice: the index holds a copy). */
function cost(event: StoredEvent): number {
  return event.frame.length + ENTRY_OVERHEAD + (event.replaced?.length ?? 0) * 2
}

/** The first n of a list of space-separated ids. */
function firstIds(ids: string, n: number): string {
  let at = -1
  for (let i = 0; i < n; i++) {
    at = ids.indexOf(' ', at + 1)
    if (at < 0) return ids
  }
  return ids.slice(0, at)
}
