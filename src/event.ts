// The wire contract of an event, pure: validate one published event object, and
// turn one channel message into the recipients and the SSE frame to write to each
// of them, or into a drop reason. Each message is parsed, validated and framed
// exactly once, whatever the number of recipients or connected users.
import { normalizeRecipient } from './recipient.js'
import { encodeEvent } from './sse/frame.js'

/** Valid `type`, sent as the SSE event name. */
export const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,64}$/
/** Names the service itself sends in-band; a publisher cannot impersonate them. */
export const RESERVED_TYPES: ReadonlySet<string> = new Set(['auth-expired', 'resync', 'position'])
/** Most recipients one event may name (MAX_EVENT_BYTES bounds the list too). */
export const MAX_RECIPIENTS = 10_000

export type DropReason =
  | 'too_large'
  | 'not_json'
  | 'not_object'
  | 'bad_recipient'
  | 'bad_type'
  | 'reserved_type'
  | 'bad_envelope'

export type InvalidReason = Exclude<DropReason, 'too_large' | 'not_json' | 'bad_envelope'>

/** A valid event: who it is for (normalized, distinct) and its SSE name. */
export interface ValidEvent {
  recipients: string[]
  type: string | undefined
}

export type Validation =
  | ({ ok: true } & ValidEvent)
  | { ok: false; reason: InvalidReason; field: 'recipient_id' | 'recipient_ids' | 'type' | 'event'; message: string }

/** Checks one event object against the contract; the message says what is wrong, for a 400. */
export function validateEvent(body: unknown): Validation {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, reason: 'not_object', field: 'event', message: 'an event must be a JSON object' }
  }
  const event = body as Record<string, unknown>
  const one = event.recipient_id
  const many = event.recipient_ids
  let recipients: string[] | undefined
  if (one !== undefined && many !== undefined) {
    return { ok: false, reason: 'bad_recipient', field: 'recipient_ids', message: 'give recipient_id or recipient_ids, not both' }
  }
  if (one !== undefined) {
    const id = normalizeRecipient(one)
    if (id === undefined) {
      return { ok: false, reason: 'bad_recipient', field: 'recipient_id', message: 'must be a string of 1 to 256 characters or a safe integer' }
    }
    recipients = [id]
  } else {
    recipients = distinctRecipients(many)
    if (recipients === undefined) {
      return {
        ok: false,
        reason: 'bad_recipient',
        field: many === undefined ? 'recipient_id' : 'recipient_ids',
        message:
          many === undefined
            ? 'recipient_id or recipient_ids is required'
            : `must be an array of 1 to ${MAX_RECIPIENTS} user ids (strings of 1 to 256 characters or safe integers)`,
      }
    }
  }
  const type = event.type
  if (type !== undefined && (typeof type !== 'string' || !EVENT_TYPE.test(type))) {
    return { ok: false, reason: 'bad_type', field: 'type', message: 'must match ^[A-Za-z0-9_.:-]{1,64}$' }
  }
  if (type !== undefined && RESERVED_TYPES.has(type)) {
    return { ok: false, reason: 'reserved_type', field: 'type', message: `"${type}" is reserved for the service` }
  }
  return { ok: true, recipients, type }
}

function distinctRecipients(many: unknown): string[] | undefined {
  if (!Array.isArray(many) || many.length === 0 || many.length > MAX_RECIPIENTS) return undefined
  const ids = new Set<string>()
  for (const value of many) {
    const id = normalizeRecipient(value)
    if (id === undefined) return undefined
    ids.add(id)
  }
  return [...ids]
}

export type ParsedMessage =
  | { ok: true; recipients: string[]; frame: Buffer }
  | { ok: false; reason: DropReason }

/** Message size check shared by every way in: cheap test first, exact one second. */
export function tooLarge(raw: string, maxBytes: number): boolean {
  // A string's length in UTF-16 units never exceeds its UTF-8 length: the cheap
  // test refuses most oversized messages without scanning them.
  return raw.length > maxBytes || Buffer.byteLength(raw) > maxBytes
}

/**
 * The `data:` of a live event: the published object as one line. Without
 * `recipient_ids`: recipients do not see each other (as with stored events),
 * and one frame for thousands of recipients does not carry thousands of ids.
 */
function frameData(raw: string, body: Record<string, unknown>): string {
  if (body.recipient_ids !== undefined) {
    const { recipient_ids: _everyone, ...rest } = body
    return JSON.stringify(rest)
  }
  // JSON.stringify never emits a raw line break, and neither does JSON text
  // without one; only pretty-printed input needs re-serialising to one line.
  return raw.includes('\n') || raw.includes('\r') ? JSON.stringify(body) : raw.trim()
}

/** A plain event as published on the channel: delivered live, without id or history. */
export function parseMessage(raw: string, maxBytes: number): ParsedMessage {
  if (tooLarge(raw, maxBytes)) return { ok: false, reason: 'too_large' }
  let body: unknown
  try {
    body = JSON.parse(raw)
  } catch {
    return { ok: false, reason: 'not_json' }
  }
  const valid = validateEvent(body)
  if (!valid.ok) return { ok: false, reason: valid.reason }
  const data = frameData(raw, body as Record<string, unknown>)
  const frame = Buffer.from(encodeEvent(valid.type === undefined ? { data } : { event: valid.type, data }))
  return { ok: true, recipients: valid.recipients, frame }
}
