// The wire contract of the channel, pure: turn one published message into the
// recipients and the SSE frame to write to each of them, or into a drop reason.
// Each message is parsed, validated and framed exactly once, whatever the number
// of recipients or connected users.
import { normalizeRecipient } from './recipient.js'
import { encodeEvent } from './sse/frame.js'

/** Valid `type`, sent as the SSE event name. */
export const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,64}$/
/** Names the service itself sends in-band; a publisher cannot impersonate them. */
export const RESERVED_TYPES: ReadonlySet<string> = new Set(['auth-expired', 'resync'])
/** Most recipients one event may name. */
export const MAX_RECIPIENTS = 1000

export type DropReason =
  | 'too_large'
  | 'not_json'
  | 'not_object'
  | 'bad_recipient'
  | 'bad_type'
  | 'reserved_type'

export type ParsedMessage =
  | { ok: true; recipients: string[]; frame: Buffer }
  | { ok: false; reason: DropReason }

const drop = (reason: DropReason): ParsedMessage => ({ ok: false, reason })

export function parseMessage(raw: string, maxBytes: number): ParsedMessage {
  // A string's length in UTF-16 units never exceeds its UTF-8 length: the cheap
  // test refuses most oversized messages without scanning them.
  if (raw.length > maxBytes || Buffer.byteLength(raw) > maxBytes) return drop('too_large')
  let body: unknown
  try {
    body = JSON.parse(raw)
  } catch {
    return drop('not_json')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return drop('not_object')
  const event = body as Record<string, unknown>

  const recipients = recipientsOf(event)
  if (recipients === undefined) return drop('bad_recipient')

  const type = event.type
  if (type !== undefined && (typeof type !== 'string' || !EVENT_TYPE.test(type))) return drop('bad_type')
  if (type !== undefined && RESERVED_TYPES.has(type)) return drop('reserved_type')

  // JSON.stringify never emits a raw line break, and neither does JSON text
  // without one; only pretty-printed input needs re-serialising to one line.
  const data = raw.includes('\n') || raw.includes('\r') ? JSON.stringify(event) : raw.trim()
  const frame = Buffer.from(encodeEvent(type === undefined ? { data } : { event: type, data }))
  return { ok: true, recipients, frame }
}

function recipientsOf(event: Record<string, unknown>): string[] | undefined {
  const one = event.recipient_id
  const many = event.recipient_ids
  if (one !== undefined && many !== undefined) return undefined
  if (one !== undefined) {
    const id = normalizeRecipient(one)
    return id === undefined ? undefined : [id]
  }
  if (!Array.isArray(many) || many.length === 0 || many.length > MAX_RECIPIENTS) return undefined
  const ids = new Set<string>()
  for (const value of many) {
    const id = normalizeRecipient(value)
    if (id === undefined) return undefined
    ids.add(id)
  }
  return [...ids]
}
