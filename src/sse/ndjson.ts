// NDJSON framing for readers that are no browser (a worker, a CLI, a script
// reading lines); pure. One JSON object per line, LF-terminated; an empty line
// is a heartbeat. Events are framed once, as SSE (event.ts, envelope.ts,
// history): an NDJSON stream translates the service's own event frames.
//   event    {"type":"<type, or message>","id":"<event id, when stored>","data":<the published object>}
//   service  {"type":"resync"|"auth-expired","data":{}}, {"type":"position","id":"...","data":{}}
//   retry    {"retry":<ms>}: no `type`, so no published event can be taken for it
// The event is wrapped, not merged into one object with `id` and `type`: the
// published object may carry an `id` of its own (README, Event format).

/** What EventSource dispatches an event without `event:` as; NDJSON names it the same. */
const UNTYPED = 'message'
// [spec] Only LF ends an NDJSON line, but line readers split on more: CR (Python's
// bytes.splitlines, requests' iter_lines) and U+0085, U+2028, U+2029 (str.splitlines,
// iter_lines(decode_unicode=True)). JSON text has those only inside strings, where
// an escape means the same.
const SPLITTERS = /[\u0085\u2028\u2029]/g
const LINE_BREAK = /[\r\n]/

function escapeSplitters(json: string): string {
  return json.replace(SPLITTERS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** The `data` member: the payload as JSON on one line; a payload that is no JSON goes as a string. */
function dataJson(payload: string): string {
  try {
    const value: unknown = JSON.parse(payload)
    return escapeSplitters(LINE_BREAK.test(payload) ? JSON.stringify(value) : payload)
  } catch {
    // Only a hand-made envelope on the channel can carry this: SSE readers get the text, so do these.
    return escapeSplitters(JSON.stringify(payload))
  }
}

/** One line: `type`, then `id` when present, then `data` (raw JSON, already one line). */
function line(type: string, id: string | undefined, data: string): string {
  return `{"type":${JSON.stringify(type)}${id === undefined ? '' : `,"id":${JSON.stringify(id)}`},"data":${data}}\n`
}

/** A frame of the service's own kinds: `position` (with `id`), `resync`, `auth-expired`. */
export function encodeNdjsonEvent(type: string, id?: string): string {
  return line(type, id, '{}')
}

/** The reconnection delay, as SSE's `retry:` gives it. */
export function encodeNdjsonRetry(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError('retry must be a non-negative integer')
  return `{"retry":${ms}}\n`
}

/** A heartbeat: an empty line. */
export const NDJSON_HEARTBEAT = '\n'

/**
 * The NDJSON line of an event frame as sse/frame.ts encodes it (`event:`, then
 * `id:`, then `data:` lines, then a blank line): the fields are read back the
 * way EventSource reads them, data lines joined with LF.
 */
export function ndjsonFromSse(frame: string): string {
  let type = UNTYPED
  let id: string | undefined
  const data: string[] = []
  for (const field of frame.split('\n')) {
    if (field.startsWith('data: ')) data.push(field.slice(6))
    else if (field.startsWith('event: ')) type = field.slice(7)
    else if (field.startsWith('id: ')) id = field.slice(4)
  }
  return line(type, id, dataJson(data.join('\n')))
}
