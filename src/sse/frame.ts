// Server-Sent Events framing, and the HTTP/1.1 chunk a frame travels in; pure.
// [spec] WHATWG HTML, "Server-sent events", section 9.2.6 (interpreting an
// event stream): lines end in CR, LF or CRLF; a blank line dispatches; `:`
// starts a comment; fields are `name: value`.

export interface SseEvent {
  /** `event:` field; dispatched under this name instead of `message`. */
  event?: string
  /** `id:` field; the browser echoes it back as Last-Event-ID on reconnect. */
  id?: string
  /** Payload; each of its lines becomes one `data:` line. */
  data: string
}

// [spec] A CR, an LF or a CRLF each end a line, so any of them inside a field
// value would end it early and let the rest be read as a new field.
const LINE_BREAK = /\r\n|\r|\n/
const FORBIDDEN_IN_FIELD = /[\r\n]/
// [spec] An id containing U+0000 is ignored by the browser, so we refuse it.
const FORBIDDEN_IN_ID = /[\r\n\0]/

/** Encodes one event. Throws on an `event` or `id` that could break the framing. */
export function encodeEvent(e: SseEvent): string {
  let out = ''
  if (e.event !== undefined) {
    if (e.event === '' || FORBIDDEN_IN_FIELD.test(e.event)) throw new TypeError('SSE event name must be one non-empty line')
    out += `event: ${e.event}\n`
  }
  if (e.id !== undefined) {
    if (FORBIDDEN_IN_ID.test(e.id)) throw new TypeError('SSE id must not contain CR, LF or NUL')
    out += `id: ${e.id}\n`
  }
  // One `data:` line per payload line; the browser joins them back with LF.
  for (const line of e.data.split(LINE_BREAK)) out += `data: ${line}\n`
  return `${out}\n`
}

/** A comment line: ignored by EventSource, keeps proxies and NATs from idling the connection out. */
export function encodeComment(text = ''): string {
  if (FORBIDDEN_IN_FIELD.test(text)) throw new TypeError('SSE comment must be one line')
  return text === '' ? ':\n\n' : `: ${text}\n\n`
}

/** Sets the client's reconnection delay. */
export function encodeRetry(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError('SSE retry must be a non-negative integer')
  return `retry: ${ms}\n\n`
}

const CRLF = Buffer.from('\r\n')

/**
 * One HTTP/1.1 chunk (RFC 9112, section 7.1): the size in hex, CRLF, the bytes,
 * CRLF. Streams write their frames as chunks straight to the socket.
 */
export function encodeChunk(bytes: Buffer): Buffer {
  if (bytes.length === 0) throw new RangeError('an empty chunk would end the body')
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`, 'latin1'), bytes, CRLF])
}
