// The channel's wire contract: what is delivered, to whom, and what is dropped.
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { MAX_RECIPIENTS, parseMessage } from '../src/event.js'

const MAX = 262_144

function frameOf(raw: string): EventSourceMessage {
  const parsed = parseMessage(raw, MAX)
  if (!parsed.ok) throw new Error(`dropped: ${parsed.reason}`)
  const events: EventSourceMessage[] = []
  createParser({ onEvent: (e) => events.push(e) }).feed(parsed.frame.toString())
  if (events.length !== 1) throw new Error(`expected one event, got ${events.length}`)
  return events[0] as EventSourceMessage
}

t.test('a valid event: recipients, event name and data', async (t) => {
  const raw = '{"recipient_id":"42","type":"order.shipped","order":"A-17"}'
  const parsed = parseMessage(raw, MAX)
  t.ok(parsed.ok)
  if (!parsed.ok) return
  t.same(parsed.recipients, ['42'])
  const e = frameOf(raw)
  t.equal(e.event, 'order.shipped')
  t.same(JSON.parse(e.data), { recipient_id: '42', type: 'order.shipped', order: 'A-17' })
})

t.test('a brace inside an id is fine; only a leading } is refused', async (t) => {
  for (const id of ['a}b', '{x}', 'a{b']) {
    const parsed = parseMessage(JSON.stringify({ recipient_id: id }), MAX)
    t.same(parsed.ok && parsed.recipients, [id], id)
  }
})

t.test('numeric recipient ids compare as strings', async (t) => {
  const parsed = parseMessage('{"recipient_id":42}', MAX)
  t.same(parsed.ok && parsed.recipients, ['42'])
})

t.test('recipient_ids: deduplicated, each normalised', async (t) => {
  const parsed = parseMessage('{"recipient_ids":[1,"1","2"]}', MAX)
  t.same(parsed.ok && parsed.recipients, ['1', '2'])
})

t.test('recipient_ids: the frame carries the event without the list', async (t) => {
  const frame = frameOf('{"recipient_ids":[1,2],"type":"sale","n":{"a":1}}')
  t.same(JSON.parse(frame.data), { type: 'sale', n: { a: 1 } }, 'recipients do not see each other')
  const everyone = Array.from({ length: MAX_RECIPIENTS }, (_, i) => `u${i}`)
  const big = parseMessage(JSON.stringify({ recipient_ids: everyone, type: 'sale' }), MAX)
  t.equal(big.ok && big.recipients.length, MAX_RECIPIENTS, `${MAX_RECIPIENTS} recipients in one event`)
  t.ok(big.ok && big.frame.length < 100, 'one small frame for all of them')
})

t.test('every type allowed by the pattern is accepted', async (t) => {
  for (const type of ['a', 'order.shipped', 'x:y', 'A_B-9', 'z'.repeat(64)]) {
    t.equal(frameOf(JSON.stringify({ recipient_id: 1, type })).event, type)
  }
})

t.test('bad input is dropped with its reason', async (t) => {
  const cases: Array<[string, string]> = [
    ['not json', 'not_json'],
    ['', 'not_json'],
    ['{"recipient_id":1', 'not_json'],
    ['42', 'not_object'],
    ['"text"', 'not_object'],
    ['null', 'not_object'],
    ['[{"recipient_id":1}]', 'not_object'],
    ['{}', 'bad_recipient'],
    ['{"recipient_id":null}', 'bad_recipient'],
    ['{"recipient_id":""}', 'bad_recipient'],
    ['{"recipient_id":{"id":1}}', 'bad_recipient'],
    ['{"recipient_id":[1]}', 'bad_recipient'],
    ['{"recipient_id":true}', 'bad_recipient'],
    ['{"recipient_id":1.5}', 'bad_recipient'],
    ['{"recipient_id":12345678901234567890}', 'bad_recipient'],
    [JSON.stringify({ recipient_id: 'x'.repeat(257) }), 'bad_recipient'],
    // An empty Redis Cluster hash tag ("{}..."): the user's keys would scatter over slots.
    ['{"recipient_id":"}a"}', 'bad_recipient'],
    ['{"recipient_ids":["a","}"]}', 'bad_recipient'],
    ['{"recipient_id":1,"recipient_ids":[2]}', 'bad_recipient'],
    ['{"recipient_ids":[]}', 'bad_recipient'],
    ['{"recipient_ids":"1"}', 'bad_recipient'],
    ['{"recipient_ids":[1,null]}', 'bad_recipient'],
    [JSON.stringify({ recipient_ids: Array.from({ length: MAX_RECIPIENTS + 1 }, (_, i) => i) }), 'bad_recipient'],
    ['{"recipient_id":1,"type":""}', 'bad_type'],
    ['{"recipient_id":1,"type":7}', 'bad_type'],
    ['{"recipient_id":1,"type":"a b"}', 'bad_type'],
    ['{"recipient_id":1,"type":"x\\ndata: injected"}', 'bad_type'],
    ['{"recipient_id":1,"type":"x\\r\\nid: 9"}', 'bad_type'],
    ['{"recipient_id":1,"type":"x\\r"}', 'bad_type'],
    [JSON.stringify({ recipient_id: 1, type: 'z'.repeat(65) }), 'bad_type'],
    ['{"recipient_id":1,"type":"auth-expired"}', 'reserved_type'],
    ['{"recipient_id":1,"type":"resync"}', 'reserved_type'],
  ]
  for (const [raw, reason] of cases) {
    t.same(parseMessage(raw, MAX), { ok: false, reason }, raw.slice(0, 60))
  }
})

t.test('size limit counts bytes, not characters', async (t) => {
  const limit = 1000
  const fits = JSON.stringify({ recipient_id: 1, p: 'a'.repeat(limit - 40) })
  t.ok(parseMessage(fits, limit).ok)
  const multiByte = JSON.stringify({ recipient_id: 1, p: 'é'.repeat(600) }) // ~1220 bytes, ~620 chars
  t.same(parseMessage(multiByte, limit), { ok: false, reason: 'too_large' })
})

t.test('pretty-printed JSON is delivered as one line; compact JSON as sent', async (t) => {
  const pretty = '{\n  "recipient_id": 1,\r\n  "a": "x"\n}'
  const e = frameOf(pretty)
  t.same(JSON.parse(e.data), { recipient_id: 1, a: 'x' })
  t.notMatch(e.data, /\n/)
  const compact = '{"recipient_id":1,"a":"x"}'
  t.equal(frameOf(compact).data, compact)
})

t.test('payload strings with escaped newlines and U+2028 stay inside one data line', async (t) => {
  const raw = JSON.stringify({ recipient_id: 1, text: 'a\nb\r\nc\u2028d' })
  const parsed = parseMessage(raw, MAX)
  t.ok(parsed.ok)
  if (!parsed.ok) return
  t.equal(parsed.frame.toString().split('\n').filter((l) => l.startsWith('data:')).length, 1)
  t.equal(JSON.parse(frameOf(raw).data).text, 'a\nb\r\nc\u2028d')
})
