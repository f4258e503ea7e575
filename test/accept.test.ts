// Content negotiation of GET /notify (RFC 9110, section 12.5.1), pure: which
// stream format an Accept header gets, or none (406).
import t from 'tap'
import { negotiate } from '../src/sse/accept.js'

t.test('no preference, or none that parses: SSE, what a plain EventSource gets', async (t) => {
  for (const accept of [undefined, '', ' ', ',', 'garbage', 'text', '/', '*/event-stream', 'text/event-stream;q=2', 'text/plain;q=x']) {
    t.equal(negotiate(accept), 'sse', JSON.stringify(accept))
  }
})

t.test('the exact types', async (t) => {
  t.equal(negotiate('text/event-stream'), 'sse')
  t.equal(negotiate('application/x-ndjson'), 'ndjson')
  t.equal(negotiate('Application/X-NDJSON'), 'ndjson', 'types are case-insensitive')
  t.equal(negotiate('application/x-ndjson; charset=UTF-8'), 'ndjson', 'our charset matches, in any case')
  t.equal(negotiate('application/x-ndjson;charset="utf-8"'), 'ndjson', 'quoted')
})

t.test('wildcards: */* and text/* get SSE (the default), application/* NDJSON', async (t) => {
  t.equal(negotiate('*/*'), 'sse')
  t.equal(negotiate('text/*'), 'sse')
  t.equal(negotiate('application/*'), 'ndjson')
  t.equal(negotiate('application/json, */*;q=0.1'), 'sse', "what many HTTP clients send: the wildcard's weight")
})

t.test('weights decide; equal weights go to SSE', async (t) => {
  t.equal(negotiate('text/event-stream;q=0.5, application/x-ndjson'), 'ndjson')
  t.equal(negotiate('text/event-stream, application/x-ndjson;q=0.9'), 'sse')
  t.equal(negotiate('application/x-ndjson, text/event-stream'), 'sse', 'the order of the list is no preference')
  t.equal(negotiate('application/x-ndjson;q=0.001, text/event-stream;q=0'), 'ndjson', 'the smallest weight is still acceptable')
  t.equal(negotiate('application/x-ndjson;q=1.000'), 'ndjson')
})

t.test('the most specific range gives the weight', async (t) => {
  t.equal(negotiate('*/*;q=0.1, application/x-ndjson'), 'ndjson')
  t.equal(negotiate('*/*, text/event-stream;q=0'), 'ndjson', 'SSE refused by name, NDJSON taken by the wildcard')
  t.equal(negotiate('application/*;q=0.9, text/*;q=0.8'), 'ndjson')
  t.equal(negotiate('text/event-stream;q=0.2, text/event-stream;charset=utf-8;q=0.9, application/x-ndjson;q=0.5'), 'sse', 'with our charset over without')
})

t.test('nothing acceptable: undefined (406)', async (t) => {
  for (const accept of [
    'application/json',
    'text/html, application/xhtml+xml',
    'text/event-stream;q=0, application/x-ndjson;q=0',
    '*/*;q=0',
    'application/x-ndjson;charset=latin1',
    'text/event-stream;version=2',
    'text/*;q=0, application/json',
  ]) {
    t.equal(negotiate(accept), undefined, accept)
  }
})

t.test('invalid elements are skipped, the valid ones count', async (t) => {
  t.equal(negotiate('bogus, application/x-ndjson'), 'ndjson')
  t.equal(negotiate('application/x-ndjson;q=1.5, application/json'), undefined, 'a weight out of range drops its element')
})

t.test('after q come extensions, not parameters', async (t) => {
  t.equal(negotiate('application/x-ndjson;q=0.8;level=1'), 'ndjson')
  t.equal(negotiate('text/html;title="a, b;c", application/x-ndjson'), 'ndjson', 'commas and semicolons inside quotes')
})
