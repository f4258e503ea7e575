// The channel message redis/publish.lua sends for an event it has stored, pure:
//   "\x1e" <event id or ''> "\n" <type or ''> "\n" <recipient as a JSON string> "\n" <data>
// The recipient is JSON-encoded because a user id may contain a line break; the
// type and id never do. Data is sent as is: the script checked it is a JSON object.
import { RESERVED_TYPES, EVENT_TYPE, type DropReason } from '../event.js'
import { normalizeRecipient } from '../recipient.js'
import { encodeEvent } from '../sse/frame.js'
import { parseEventId, type Position } from './event-id.js'

export const ENVELOPE_MARK = '\x1e'

export type ParsedEnvelope =
  | { ok: true; recipient: string; position: Position | undefined; frame: Buffer }
  | { ok: false; reason: DropReason }

export function isEnvelope(raw: string): boolean {
  return raw.charCodeAt(0) === 0x1e
}

/**
 * The copy redis/publish.lua sends on the classic channel while
 * PUBLISH_CLASSIC_COPY is on: one space after the recipient's JSON, which older
 * instances read past (JSON allows it). This version skips it: the same event
 * reaches it on the recipient's own channel.
 */
export function isClassicCopy(raw: string): boolean {
  const a = raw.indexOf('\n')
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1)
  const c = b < 0 ? -1 : raw.indexOf('\n', b + 1)
  return c > 0 && raw.charCodeAt(c - 1) === 0x20
}

export function encodeEnvelope(id: string, type: string | undefined, recipient: string, data: string): string {
  return `${ENVELOPE_MARK}${id}\n${type ?? ''}\n${JSON.stringify(recipient)}\n${data}`
}

export function parseEnvelope(raw: string): ParsedEnvelope {
  const bad = { ok: false, reason: 'bad_envelope' } as const
  const a = raw.indexOf('\n')
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1)
  const c = b < 0 ? -1 : raw.indexOf('\n', b + 1)
  if (c < 0 || c === raw.length - 1) return bad
  const id = raw.slice(1, a)
  const type = raw.slice(a + 1, b)
  let recipient: string | undefined
  try {
    recipient = normalizeRecipient(JSON.parse(raw.slice(b + 1, c)))
  } catch {
    return bad
  }
  if (recipient === undefined) return { ok: false, reason: 'bad_recipient' }
  if (type !== '' && !EVENT_TYPE.test(type)) return { ok: false, reason: 'bad_type' }
  if (RESERVED_TYPES.has(type)) return { ok: false, reason: 'reserved_type' }
  let position: Position | undefined
  if (id !== '') {
    const parsed = parseEventId(id)
    if (!parsed.ok) return bad
    position = parsed.position
  }
  const data = raw.slice(c + 1)
  const frame = Buffer.from(encodeEvent({ ...(type !== '' && { event: type }), ...(id !== '' && { id }), data }))
  return { ok: true, recipient, position, frame }
}
