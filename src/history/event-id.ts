// Event ids, pure. An id names one stored event of one recipient:
//   <ms>-<seq>.<tag>
// <ms>-<seq> is the entry id in the recipient's history (a Redis Stream entry id,
// or the same scheme in the embedded broker): it increases per recipient, so
// "newer than" is a comparison of two numbers. <tag> is the first 8 hex digits
// of SHA-1(recipient): entry ids alone repeat across recipients (two streams
// written in the same millisecond), and the tag lets a Last-Event-ID that belongs
// to someone else be told apart from one of ours. The Lua script computes the
// same tag with redis.sha1hex.
import { createHash } from 'node:crypto'

/** A position in one recipient's history. `{ ms: 0, seq: 0 }` is "before everything". */
export interface Position {
  ms: number
  seq: number
}

export const START: Readonly<Position> = Object.freeze({ ms: 0, seq: 0 })

/** Longest Last-Event-ID looked at; anything longer is malformed without a regex pass. */
const MAX_ID_LENGTH = 64
const EVENT_ID = /^(\d{1,15})-(\d{1,15})\.([0-9a-f]{8})$/
const ENTRY_ID = /^(\d{1,15})-(\d{1,15})$/

export function recipientTag(recipient: string): string {
  return createHash('sha1').update(recipient, 'utf8').digest('hex').slice(0, 8)
}

export function formatEntryId(p: Position): string {
  return `${p.ms}-${p.seq}`
}

export function formatEventId(p: Position, tag: string): string {
  return `${p.ms}-${p.seq}.${tag}`
}

/** Parses a Redis Stream entry id such as `1732200000000-3`. */
export function parseEntryId(id: string): Position | undefined {
  const m = ENTRY_ID.exec(id)
  return m === null ? undefined : { ms: Number(m[1]), seq: Number(m[2]) }
}

export type ParsedEventId = { ok: true; position: Position; tag: string } | { ok: false }

/** Parses an SSE event id as this service writes it. */
export function parseEventId(id: string): ParsedEventId {
  if (id.length > MAX_ID_LENGTH) return { ok: false }
  const m = EVENT_ID.exec(id)
  if (m === null) return { ok: false }
  return { ok: true, position: { ms: Number(m[1]), seq: Number(m[2]) }, tag: m[3] as string }
}

/** True when `a` comes after `b` in one recipient's history. */
export function isAfter(a: Position, b: Position): boolean {
  return a.ms > b.ms || (a.ms === b.ms && a.seq > b.seq)
}

export function samePosition(a: Position, b: Position): boolean {
  return a.ms === b.ms && a.seq === b.seq
}
