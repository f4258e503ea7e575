// Where a stream resumes, pure. Both brokers answer a history read with the same
// shape (the entries from a position on, and the newest entry), and this decides
// what the stream is sent: the events it missed, or `resync` when they are gone.
import { formatEntryId, isAfter, type Position, samePosition, START } from './event-id.js'

/** A stored event as streams need it: where it is in the history, and its frame (`id:` included). */
export interface Framed {
  position: Position
  frame: Buffer
}

/** One stored event of one recipient. */
export interface StoredEvent extends Framed {
  /** The SSE id, `<ms>-<seq>.<tag>`. */
  id: string
  /**
   * Published with a collapse key, in place of earlier events: their entry ids
   * (`<ms>-<seq>`), space-separated, newest first, at most 100 (redis/publish.lua).
   */
  replaced?: string
}

/** Read from one recipient's history. */
export interface ReadRequest {
  recipient: string
  /**
   * Where the reader stands: the last event it has, or START for "everything
   * stored". Undefined: only the newest position is wanted (a fresh, live stream).
   */
  from?: Position
}

/** What a broker returns for a ReadRequest. */
export interface HistoryRead {
  /** Entries at or after `from`, oldest first, at most `historySize + 1` of them. */
  range: StoredEvent[]
  /** The newest entry's position; undefined when the history is empty or gone. */
  tip: Position | undefined
  /**
   * The newest position ever trimmed from this history (START: none), when
   * known: only for a history that uses collapse keys, written by a publisher
   * that tracks it.
   */
  trimmed?: Position
}

/**
 * `announce`: the stream is told where it stands (a `position` event carrying
 * its id), because it has no id of its own there yet: a first visit, or right
 * after a resync. A client that drops before the next stored event can then
 * still resume from there.
 */
export type Outcome =
  | { resync: false; position: Position; replay: StoredEvent[]; announce?: boolean }
  | { resync: true; position: Position; replay: []; announce?: boolean }

/**
 * Trimming removes the oldest entries, so a position that is still stored
 * proves that nothing after it was lost. From START (the history was empty when
 * the reader joined), a history that reached its size may have been trimmed:
 * that is a resync too. (A collapse key removes one entry and adds one: the
 * size, once reached, stays reached.)
 *
 * A position that is no longer stored is not lost when it was replaced (an
 * event with the same collapse key took its place, which names it) and nothing
 * after it was trimmed: the reader gets everything after it. Anything else
 * (trimmed, expired, or lost in a failover: then no stored entry names it) is
 * a resync.
 */
export function decide(from: Position | undefined, read: HistoryRead, historySize: number): Outcome {
  const tip = read.tip ?? START
  if (from === undefined) return { resync: false, position: tip, replay: [], announce: true }
  const { range } = read
  if (samePosition(from, START)) {
    if (range.length >= historySize) return { resync: true, position: tip, replay: [] }
    return { resync: false, position: range.at(-1)?.position ?? START, replay: range }
  }
  const first = range[0]
  const stored = first !== undefined && samePosition(first.position, from)
  if ((!stored && !wasReplaced(from, read)) || range.length > historySize) return { resync: true, position: tip, replay: [] }
  const replay = stored ? range.slice(1) : range
  return { resync: false, position: replay.at(-1)?.position ?? from, replay }
}

/** `from` was replaced by an event still stored, and nothing after it was trimmed. */
function wasReplaced(from: Position, { range, trimmed }: HistoryRead): boolean {
  if (trimmed === undefined || isAfter(trimmed, from)) return false
  const id = ` ${formatEntryId(from)} `
  return range.some((e) => e.replaced !== undefined && ` ${e.replaced} `.includes(id))
}
