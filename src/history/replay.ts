// Where a stream resumes, pure. Both brokers answer a history read with the same
// shape (the entries from a position on, and the newest entry), and this decides
// what the stream is sent: the events it missed, or `resync` when they are gone.
import { type Position, samePosition, START } from './event-id.js'

/** A stored event as streams need it: where it is in the history, and its frame (`id:` included). */
export interface Framed {
  position: Position
  frame: Buffer
}

/** One stored event of one recipient. */
export interface StoredEvent extends Framed {
  /** The SSE id, `<ms>-<seq>.<tag>`. */
  id: string
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
 * that is a resync too.
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
  if (first === undefined || !samePosition(first.position, from) || range.length > historySize) {
    return { resync: true, position: tip, replay: [] }
  }
  const replay = range.slice(1)
  return { resync: false, position: replay.at(-1)?.position ?? from, replay }
}
