// SSE framing, checked by parsing our output with a real parser (eventsource-parser).
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { encodeChunk, encodeComment, encodeEvent, encodeRetry } from '../src/sse/frame.js'

function parse(text: string) {
  const events: EventSourceMessage[] = []
  const comments: string[] = []
  const retries: number[] = []
  const parser = createParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c), onRetry: (r) => retries.push(r) })
  parser.feed(text)
  return { events, comments, retries }
}

t.test('an event with name, id and data round-trips', async (t) => {
  const { events } = parse(encodeEvent({ event: 'order.shipped', id: '17-0', data: '{"a":1}' }))
  t.same(events, [{ event: 'order.shipped', id: '17-0', data: '{"a":1}' }])
})

t.test('data with LF, CR and CRLF becomes one data line per line and reads back joined by LF', async (t) => {
  const text = encodeEvent({ data: 'one\ntwo\rthree\r\nfour' })
  t.equal(text, 'data: one\ndata: two\ndata: three\ndata: four\n\n')
  t.equal(parse(text).events[0]?.data, 'one\ntwo\nthree\nfour')
})

t.test('data that looks like fields stays data', async (t) => {
  const { events } = parse(encodeEvent({ data: 'x\nevent: evil\nid: 666\nretry: 1' }))
  t.equal(events.length, 1)
  t.equal(events[0]?.event, undefined)
  t.equal(events[0]?.id, undefined)
  t.equal(events[0]?.data, 'x\nevent: evil\nid: 666\nretry: 1')
})

t.test('empty data and data with leading spaces survive', async (t) => {
  t.equal(parse(encodeEvent({ data: '' })).events[0]?.data, '')
  t.equal(parse(encodeEvent({ data: '  indented' })).events[0]?.data, '  indented')
})

t.test('line breaks in event name or id are refused, never written', async (t) => {
  for (const bad of ['a\nb', 'a\rb', 'a\r\nb', '\n', 'x\ndata: injected']) {
    t.throws(() => encodeEvent({ event: bad, data: '{}' }), TypeError, JSON.stringify(bad))
    t.throws(() => encodeEvent({ id: bad, data: '{}' }), TypeError, JSON.stringify(bad))
  }
  t.throws(() => encodeEvent({ id: 'a\0b', data: '{}' }), TypeError, 'NUL in id')
  t.throws(() => encodeEvent({ event: '', data: '{}' }), TypeError, 'empty event name')
})

t.test('comments and retry', async (t) => {
  const { comments, retries, events } = parse(encodeRetry(3000) + encodeComment('connected') + encodeComment())
  t.same(retries, [3000])
  t.same(comments, ['connected', ''])
  t.same(events, [], 'neither dispatches an event')
  t.throws(() => encodeComment('a\nb'))
  t.throws(() => encodeRetry(-1))
  t.throws(() => encodeRetry(1.5))
})

t.test('frames concatenate into a stream that parses event by event', async (t) => {
  const text = [1, 2, 3].map((i) => encodeEvent({ event: `e${i}`, data: JSON.stringify({ i }) })).join(encodeComment())
  const { events } = parse(text)
  t.same(events.map((e) => [e.event, JSON.parse(e.data).i]), [['e1', 1], ['e2', 2], ['e3', 3]])
})

t.test('HTTP/1.1 chunks: hex size, CRLF, bytes, CRLF; never empty', async (t) => {
  t.equal(encodeChunk(Buffer.from('abc')).toString('latin1'), '3\r\nabc\r\n')
  const big = Buffer.alloc(300, 'x')
  t.equal(encodeChunk(big).toString('latin1'), `12c\r\n${'x'.repeat(300)}\r\n`)
  t.throws(() => encodeChunk(Buffer.alloc(0)), RangeError, 'a zero-size chunk is the end of the body')
})
