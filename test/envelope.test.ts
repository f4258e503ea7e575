// The channel message of a stored event: encode, parse, and what the frame reads as.
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { encodeEnvelope, isEnvelope, parseEnvelope } from '../src/history/envelope.js'
import { formatEventId, recipientTag } from '../src/history/event-id.js'

function events(frame: Buffer): EventSourceMessage[] {
  const out: EventSourceMessage[] = []
  createParser({ onEvent: (e) => out.push(e) }).feed(frame.toString())
  return out
}

function parsedOk(raw: string) {
  const parsed = parseEnvelope(raw)
  if (!parsed.ok) throw new Error(`refused: ${parsed.reason}`)
  return parsed
}

t.test('an envelope round-trips: recipient, position and a frame with event, id and data', async (t) => {
  const id = formatEventId({ ms: 1732200000000, seq: 3 }, recipientTag('alice'))
  const data = '{"recipient_id":"alice","type":"order.shipped","n":1}'
  const raw = encodeEnvelope(id, 'order.shipped', 'alice', data)
  t.equal(raw, `\x1e${id}\norder.shipped\n"alice"\n${data}`, 'the documented layout')
  t.ok(isEnvelope(raw))
  const parsed = parsedOk(raw)
  t.equal(parsed.recipient, 'alice')
  t.same(parsed.position, { ms: 1732200000000, seq: 3 })
  t.same(events(parsed.frame), [{ event: 'order.shipped', id, data }])
})

t.test('no type: no event line, the browser dispatches `message`', async (t) => {
  const id = formatEventId({ ms: 5, seq: 0 }, recipientTag('7'))
  const parsed = parsedOk(encodeEnvelope(id, undefined, '7', '{"recipient_id":7}'))
  t.notMatch(parsed.frame.toString(), /^event:/m)
  t.same(events(parsed.frame), [{ event: undefined, id, data: '{"recipient_id":7}' }])
})

t.test('empty id (history off): no position and no id line', async (t) => {
  const raw = encodeEnvelope('', 'ping', '42', '{"a":1}')
  t.ok(raw.startsWith('\x1e\nping\n'))
  const parsed = parsedOk(raw)
  t.equal(parsed.position, undefined)
  t.notMatch(parsed.frame.toString(), /^id:/m)
  const [e] = events(parsed.frame)
  t.equal(e?.id, undefined)
  t.equal(e?.event, 'ping')
  t.equal(e?.data, '{"a":1}')
})

t.test('a recipient with line breaks stays one line of the envelope and comes back whole', async (t) => {
  for (const recipient of ['a\nb', 'a\r\nb', '\n', 'x\n{"y":1}\nz', 'quote"back\\slash', 'élodie ✓']) {
    const raw = encodeEnvelope(formatEventId({ ms: 1, seq: 0 }, recipientTag(recipient)), 't', recipient, '{"k":"v"}')
    const parsed = parsedOk(raw)
    t.equal(parsed.recipient, recipient, JSON.stringify(recipient))
    t.same(events(parsed.frame).map((e) => e.data), ['{"k":"v"}'], 'data untouched')
  }
})

t.test('a number-like recipient stays the string it was', async (t) => {
  const parsed = parsedOk(encodeEnvelope('', undefined, '42', '{}'))
  t.equal(parsed.recipient, '42')
  t.equal(typeof parsed.recipient, 'string')
  // A JSON number in the recipient line (another publisher) is read as the same user.
  t.equal(parsedOk('\x1e\n\n42\n{}').recipient, '42')
  t.equal(parsedOk('\x1e\n\n"007"\n{}').recipient, '007', 'leading zeros kept: a string')
})

t.test('data with line breaks and field-like lines stays data', async (t) => {
  const data = '{"a":1}\nevent: evil\nid: 666'
  const parsed = parsedOk(encodeEnvelope('1-0.deadbeef', 'x', 'r', data))
  const out = events(parsed.frame)
  t.equal(out.length, 1)
  t.equal(out[0]?.event, 'x')
  t.equal(out[0]?.id, '1-0.deadbeef')
  t.equal(out[0]?.data, data)
})

t.test('bad envelopes are dropped with their reason', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['\x1e', 'bad_envelope', 'mark only'],
    ['\x1e1-0.deadbeef', 'bad_envelope', 'no newline'],
    ['\x1e1-0.deadbeef\nt', 'bad_envelope', 'one newline'],
    ['\x1e1-0.deadbeef\nt\n"r"', 'bad_envelope', 'two newlines, no data line'],
    ['\x1e1-0.deadbeef\nt\n"r"\n', 'bad_envelope', 'empty data'],
    ['\x1enot-an-id\nt\n"r"\n{}', 'bad_envelope', 'bad id'],
    ['\x1e1-0\nt\n"r"\n{}', 'bad_envelope', 'entry id without tag'],
    ['\x1e1-0.DEADBEEF\nt\n"r"\n{}', 'bad_envelope', 'upper-case tag'],
    ['\x1e1-0.deadbeef\r\nt\n"r"\n{}', 'bad_envelope', 'CR in id'],
    [`\x1e${'1'.repeat(60)}-0.deadbeef\nt\n"r"\n{}`, 'bad_envelope', 'id too long'],
    ['\x1e\nt\nr\n{}', 'bad_envelope', 'recipient not JSON'],
    ['\x1e\nt\n"r\n{}', 'bad_envelope', 'recipient JSON cut'],
    ['\x1e\nt\n\n{}', 'bad_envelope', 'recipient line empty'],
    ['\x1e\nt\n""\n{}', 'bad_recipient', 'empty recipient'],
    ['\x1e\nt\nnull\n{}', 'bad_recipient', 'null recipient'],
    ['\x1e\nt\n1.5\n{}', 'bad_recipient', 'float recipient'],
    ['\x1e\nt\n["r"]\n{}', 'bad_recipient', 'array recipient'],
    [`\x1e\nt\n${JSON.stringify('x'.repeat(257))}\n{}`, 'bad_recipient', 'recipient too long'],
    ['\x1e\na b\n"r"\n{}', 'bad_type', 'space in type'],
    ['\x1e\nx\r\n"r"\n{}', 'bad_type', 'CR in type'],
    [`\x1e\n${'z'.repeat(65)}\n"r"\n{}`, 'bad_type', 'type too long'],
    ['\x1e\nresync\n"r"\n{}', 'reserved_type', 'resync'],
    ['\x1e\nauth-expired\n"r"\n{}', 'reserved_type', 'auth-expired'],
  ]
  for (const [raw, reason, name] of cases) t.same(parseEnvelope(raw), { ok: false, reason }, name)
})

t.test('isEnvelope looks at the first character only', async (t) => {
  t.ok(isEnvelope('\x1e'))
  t.notOk(isEnvelope('{"recipient_id":1}'))
  t.notOk(isEnvelope(''))
  t.notOk(isEnvelope(' \x1e'))
})
