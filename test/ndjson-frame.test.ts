// NDJSON framing, pure: every frame an NDJSON stream can send is one JSON
// object on one line (or an empty line), and an event says what a real SSE
// parser (eventsource-parser) reads from the same event's SSE frame.
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t, { type Test } from 'tap'
import { parseMessage } from '../src/event.js'
import { encodeEnvelope, parseEnvelope } from '../src/history/envelope.js'
import { type Framer, framers } from '../src/sse/framer.js'
import { encodeEvent } from '../src/sse/frame.js'
import { ndjsonFromSse } from '../src/sse/ndjson.js'

const { sse, ndjson } = framers(3000)

function sseRead(frame: Buffer): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  createParser({ onEvent: (e) => events.push(e) }).feed(frame.toString())
  return events
}

/** Splits like the strictest line reader around (Python's str.splitlines): one line, and nothing after its LF. */
function oneLine(t: Test, text: string, what: string): unknown {
  t.ok(text.endsWith('\n'), `${what}: ends with LF`)
  t.same(text.split(/\r\n|[\n\r\v\f\x1c\x1d\x1e\u0085\u2028\u2029]/), [text.slice(0, -1), ''], `${what}: one line for any line splitter`)
  return JSON.parse(text)
}


t.test('each kind of frame has its NDJSON counterpart', async (t) => {
  const at = { ms: 1732200000000, seq: 3 }
  t.same(oneLine(t, ndjson.hello.toString(), 'hello'), { retry: 3000 }, 'connect: the retry hint (no comment stands for `: connected`)')
  t.same(oneLine(t, ndjson.retry.toString(), 'retry'), { retry: 3000 }, 'shutdown, history unreachable, turned away')
  t.equal(ndjson.heartbeat.toString(), '\n', 'heartbeat: an empty line')
  t.same(oneLine(t, ndjson.resync.toString(), 'resync'), { type: 'resync', data: {} })
  t.same(oneLine(t, ndjson.authExpired.toString(), 'auth-expired'), { type: 'auth-expired', data: {} })
  const position = oneLine(t, ndjson.position(at, '42').toString(), 'position')
  t.same(position, { type: 'position', id: sseRead(sse.position(at, '42'))[0]?.id, data: {} }, 'position: the id SSE gives')
  t.match(position, { id: /^1732200000000-3\.[0-9a-f]{8}$/ })
  t.equal(ndjson.contentType, 'application/x-ndjson; charset=utf-8')
  t.equal(sse.contentType, 'text/event-stream; charset=utf-8')
})

t.test('SSE frames are unchanged, one object for every stream', async (t) => {
  const frame = Buffer.from(encodeEvent({ event: 'x', data: '{}' }))
  t.equal(sse.event(frame), frame)
})

/** The NDJSON line of an SSE event frame against what eventsource-parser reads from that frame. */
function same(t: Test, framer: Framer, frame: Buffer, what: string): Record<string, unknown> {
  const [event] = sseRead(frame)
  const line = oneLine(t, framer.event(frame).toString(), what) as Record<string, unknown>
  const expected: Record<string, unknown> = { type: event?.event ?? 'message', ...(event?.id !== undefined && { id: event.id }) }
  let data: unknown
  try {
    data = JSON.parse(event?.data ?? '')
  } catch {
    data = event?.data
  }
  t.same(line, { ...expected, data }, what)
  t.same(Object.keys(line), [...Object.keys(expected), 'data'], `${what}: type, id, data, in that order`)
  return line
}

t.test('events: type (message when untyped), id when stored, data the published object', async (t) => {
  const live = (raw: string) => {
    const parsed = parseMessage(raw, 65536)
    if (!parsed.ok) throw new Error(parsed.reason)
    return parsed.frame
  }
  const stored = (id: string, type: string | undefined, data: string) => {
    const parsed = parseEnvelope(encodeEnvelope(id, type, '42', data))
    if (!parsed.ok) throw new Error(parsed.reason)
    return parsed.frame
  }
  const shipped = same(t, ndjson, live('{"recipient_id":"42","type":"order.shipped","id":"evt-981","order":"A-17"}'), 'live, typed')
  t.same(shipped.data, { recipient_id: '42', type: 'order.shipped', id: 'evt-981', order: 'A-17' }, "the publisher's own id stays in data")
  t.notOk('id' in shipped, 'a live event has no event id')
  t.equal(same(t, ndjson, live('{"recipient_id":42,"n":1}'), 'live, untyped').type, 'message')
  same(t, ndjson, live('{\n  "recipient_ids": ["1", "2"],\n  "pretty": true\n}'), 'pretty-printed, for many')
  const kept = same(t, ndjson, stored('1732200000000-0.0a1b2c3d', 'order.shipped', '{"recipient_id":"42","id":"evt-1"}'), 'stored')
  t.equal(kept.id, '1732200000000-0.0a1b2c3d')
  same(t, ndjson, stored('1732200000000-1.0a1b2c3d', undefined, '{"a":[1,2,{"b":null}]}'), 'stored, untyped')
})

t.test('payloads no line reader may split, and payloads that are no JSON', async (t) => {
  const frame = (data: string) => Buffer.from(encodeEvent({ event: 't', data }))
  same(t, ndjson, frame('{"text":"a\u2028b\u2029c\u0085d"}'), 'U+2028, U+2029, U+0085 inside a string')
  same(t, ndjson, frame('{"a":\r\n1,\r"b":\n2}'), 'JSON with line breaks between tokens')
  same(t, ndjson, frame('{"text":"\\n\\r"}'), 'escaped line breaks stay escaped')
  // Only a hand-made envelope on the channel gets here; SSE readers get the text, NDJSON readers too.
  t.equal(same(t, ndjson, frame('not json\nsecond line'), 'no JSON').data, 'not json\nsecond line')
  same(t, ndjson, frame('{"open": '), 'cut JSON')
  same(t, ndjson, frame(''), 'empty data')
  same(t, ndjson, frame('  {"spaced":1}'), 'leading spaces')
})

t.test('an event is translated once for all the streams it goes to', async (t) => {
  const a = Buffer.from(encodeEvent({ event: 'a', data: '{}' }))
  const b = Buffer.from(encodeEvent({ event: 'b', data: '{}' }))
  const first = ndjson.event(a)
  t.equal(ndjson.event(a), first, 'the same buffer for the same frame')
  t.not(ndjson.event(b), first)
  t.same(JSON.parse(ndjson.event(a).toString()), { type: 'a', data: {} }, 'and right again after another frame')
  t.equal(ndjsonFromSse(a.toString()), first.toString())
})
