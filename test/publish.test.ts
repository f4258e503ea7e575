// POST /publish: served only with PUBLISH_TOKEN; the token is checked before
// the body is read; a batch is validated as a whole and nothing of an invalid
// batch is published; 202 means stored and published, with the ids the
// browsers get. Both brokers, except what needs Redis to go away (503).
import { once } from 'node:events'
import t, { type Test } from 'tap'
import type { MemoryBroker } from '../src/broker/memory-broker.js'
import { loadConfig } from '../src/config.js'
import { type Built, build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'
import { MAX_RECIPIENTS } from '../src/event.js'

const TOKEN = 'publish-token-0123456789abcdef'
const ENV = { PUBLISH_TOKEN: TOKEN, PUBLISH_MAX_EVENTS: '5', PUBLISH_MAX_BYTES: '65536', MAX_EVENT_BYTES: '1024' }
const ID = /^\d+-\d+\.[0-9a-f]{8}$/

interface PostOptions {
  /** The Authorization header; null: none. Default `Bearer <TOKEN>`. */
  authorization?: string | null
  /** Sent as is instead of JSON.stringify(body). */
  raw?: string
  /** Default application/json. */
  contentType?: string
}

interface Answer {
  status: number
  headers: Headers
  text: string
  json: Record<string, unknown> | undefined
}

async function post(s: Built, body: unknown, opts: PostOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/json' }
  const authorization = opts.authorization === undefined ? `Bearer ${TOKEN}` : opts.authorization
  if (authorization !== null) headers.authorization = authorization
  const res = await fetch(`${s.base}/publish`, { method: 'POST', headers, body: opts.raw ?? JSON.stringify(body) })
  const text = await res.text()
  let json: Record<string, unknown> | undefined
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

const listen = (t: Test, s: Built, user: string): Promise<TestStream> =>
  openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${user}` })

/** How many events the broker stores for `user`. */
async function stored(s: Built, user: string): Promise<number> {
  if (s.broker === 'redis') return s.redis.client().xlen(`notifications:history:{${user}}`)
  return (s.app.notifier.broker as MemoryBroker).history.read(user, { ms: 0, seq: 0 }).range.length
}

/**
 * Nothing was published for `user`: nothing is stored, and a sentinel published
 * now is the first event its open stream receives.
 */
async function nothingPublished(t: Test, s: Built, user: string, stream: TestStream): Promise<void> {
  t.equal(await stored(s, user), 0, 'nothing stored')
  const [sentinel] = await s.store({ recipient_id: user, type: 'sentinel' })
  const [first] = await stream.nextEvents(1)
  t.equal(first?.event, 'sentinel', 'the stream received nothing before the sentinel')
  t.equal(first?.id, sentinel?.id)
}

const event = (user: string, extra: Record<string, unknown> = {}) => ({ recipient_id: user, type: 'ok', ...extra })

interface ErrorCase {
  name: string
  /** The request, for a user that has a stream open. */
  body?: (user: string) => unknown
  raw?: (user: string) => string
  authorization?: string | null
  contentType?: string
  status: number
  /** Expected in the JSON answer. */
  answer?: Record<string, unknown>
  /** The answer must not name an event (the error is about the batch as a whole). */
  noEventIndex?: boolean
}

const UNAUTHORIZED = { statusCode: 401, code: 'NOTIFY_PUBLISH_UNAUTHORIZED' }
const invalid = (event: number, field: string) => ({ statusCode: 400, code: 'NOTIFY_INVALID_EVENT', event, field, message: String })

const big = (user: string) => JSON.stringify([event(user, { pad: 'x'.repeat(70_000) })])

const CASES: ErrorCase[] = [
  // Authorization: 401, with WWW-Authenticate, before anything else.
  { name: 'no Authorization header', body: (u) => event(u), authorization: null, status: 401, answer: UNAUTHORIZED },
  { name: 'wrong token', body: (u) => event(u), authorization: 'Bearer wrong-token-0123456789abcdef', status: 401, answer: UNAUTHORIZED },
  { name: 'the token with one more character', body: (u) => event(u), authorization: `Bearer ${TOKEN}x`, status: 401, answer: UNAUTHORIZED },
  { name: 'the token less its last character', body: (u) => event(u), authorization: `Bearer ${TOKEN.slice(0, -1)}`, status: 401, answer: UNAUTHORIZED },
  { name: 'wrong scheme (Basic)', body: (u) => event(u), authorization: `Basic ${TOKEN}`, status: 401, answer: UNAUTHORIZED },
  { name: 'wrong scheme (Token)', body: (u) => event(u), authorization: `Token ${TOKEN}`, status: 401, answer: UNAUTHORIZED },
  { name: 'no scheme', body: (u) => event(u), authorization: TOKEN, status: 401, answer: UNAUTHORIZED },
  { name: 'a /notify user token', body: (u) => event(u), authorization: 'Bearer user-1', status: 401, answer: UNAUTHORIZED },
  { name: 'wrong token and a body over PUBLISH_MAX_BYTES: 401, not 413', raw: big, authorization: 'Bearer nope', status: 401, answer: UNAUTHORIZED },
  { name: 'wrong token and bad JSON: 401, not 400', raw: (u) => `[{"recipient_id":"${u}"`, authorization: 'Bearer nope', status: 401, answer: UNAUTHORIZED },

  // Size: 413.
  { name: 'body over PUBLISH_MAX_BYTES', raw: big, status: 413, answer: { statusCode: 413, code: /BODY_TOO_LARGE/ } },
  {
    name: 'more than PUBLISH_MAX_EVENTS events',
    body: (u) => Array.from({ length: 6 }, (_, k) => event(u, { k })),
    status: 413,
    answer: { statusCode: 413, code: 'NOTIFY_EVENT_TOO_LARGE', field: 'events' },
    noEventIndex: true,
  },
  {
    name: 'one event over MAX_EVENT_BYTES',
    body: (u) => [event(u), event(u, { pad: 'x'.repeat(2000) })],
    status: 413,
    answer: { statusCode: 413, code: 'NOTIFY_EVENT_TOO_LARGE', event: 1, field: 'event' },
  },

  // Not JSON: 400.
  { name: 'bad JSON', raw: (u) => `[{"recipient_id":"${u}","type":"ok"}`, status: 400, answer: { statusCode: 400, code: /INVALID_JSON/ } },
  { name: 'empty body', raw: () => '', status: 400, answer: { statusCode: 400 } },
  // JSON only: a text/plain body is not read as a string event.
  { name: 'text/plain body', raw: (u) => JSON.stringify(event(u)), contentType: 'text/plain', status: 415, answer: { statusCode: 415, code: /MEDIA_TYPE/ } },
  { name: 'form body', raw: (u) => `recipient_id=${u}`, contentType: 'application/x-www-form-urlencoded', status: 415, answer: { statusCode: 415 } },

  // Schema: 400 naming the event (index in the batch) and the field. A valid
  // event first: nothing of the batch may be published.
  { name: 'recipient_id missing', body: (u) => [event(u), { type: 'ok' }], status: 400, answer: invalid(1, 'recipient_id') },
  { name: 'recipient_id a float', body: (u) => [event(u), { recipient_id: 1.5 }], status: 400, answer: invalid(1, 'recipient_id') },
  { name: 'recipient_id empty', body: (u) => [event(u), { recipient_id: '' }], status: 400, answer: invalid(1, 'recipient_id') },
  { name: 'recipient_id an object', body: (u) => [event(u), { recipient_id: { id: u } }], status: 400, answer: invalid(1, 'recipient_id') },
  { name: 'recipient_id too long', body: (u) => [event(u), { recipient_id: 'x'.repeat(257) }], status: 400, answer: invalid(1, 'recipient_id') },
  { name: 'recipient_id and recipient_ids', body: (u) => [event(u), { recipient_id: u, recipient_ids: [u] }], status: 400, answer: invalid(1, 'recipient_ids') },
  { name: 'recipient_ids empty', body: (u) => [event(u), { recipient_ids: [] }], status: 400, answer: invalid(1, 'recipient_ids') },
  { name: 'recipient_ids not an array', body: (u) => [event(u), { recipient_ids: u }], status: 400, answer: invalid(1, 'recipient_ids') },
  { name: 'recipient_ids with a bad member', body: (u) => [event(u), { recipient_ids: [u, 1.5] }], status: 400, answer: invalid(1, 'recipient_ids') },
  {
    name: `more than ${MAX_RECIPIENTS} recipient_ids`,
    body: (u) => [event(u), { recipient_ids: [u, ...Array.from({ length: MAX_RECIPIENTS }, (_, k) => k)] }],
    status: 400,
    answer: invalid(1, 'recipient_ids'),
  },
  { name: 'type with a space', body: (u) => [event(u), { recipient_id: u, type: 'bad type' }], status: 400, answer: invalid(1, 'type') },
  { name: 'type with a line break', body: (u) => [event(u), { recipient_id: u, type: 'x\ndata: forged' }], status: 400, answer: invalid(1, 'type') },
  { name: 'type of 65 characters', body: (u) => [event(u), { recipient_id: u, type: 'a'.repeat(65) }], status: 400, answer: invalid(1, 'type') },
  { name: 'type empty', body: (u) => [event(u), { recipient_id: u, type: '' }], status: 400, answer: invalid(1, 'type') },
  { name: 'type a number', body: (u) => [event(u), { recipient_id: u, type: 7 }], status: 400, answer: invalid(1, 'type') },
  { name: 'reserved type resync', body: (u) => [event(u), { recipient_id: u, type: 'resync' }], status: 400, answer: invalid(1, 'type') },
  { name: 'reserved type auth-expired', body: (u) => [event(u), { recipient_id: u, type: 'auth-expired' }], status: 400, answer: invalid(1, 'type') },
  { name: 'a string in the batch', body: (u) => [event(u), 'hello'], status: 400, answer: invalid(1, 'event') },
  { name: 'null in the batch', body: (u) => [event(u), null], status: 400, answer: invalid(1, 'event') },
  { name: 'an array in the batch', body: (u) => [event(u), [event(u)]], status: 400, answer: invalid(1, 'event') },
  { name: 'a bad event first', body: (u) => [{ recipient_id: u, type: 'resync' }, event(u)], status: 400, answer: invalid(0, 'type') },
  { name: 'a single non-object (a number)', body: () => 42, status: 400, answer: invalid(0, 'event') },
  { name: 'a single non-object (a string)', body: () => 'hello', status: 400, answer: invalid(0, 'event') },
  { name: 'a single null', body: () => null, status: 400, answer: invalid(0, 'event') },
  { name: 'a single empty object', body: () => ({}), status: 400, answer: invalid(0, 'recipient_id') },
  {
    name: 'empty array',
    body: () => [],
    status: 400,
    answer: { statusCode: 400, code: 'NOTIFY_INVALID_EVENT', field: 'events' },
    noEventIndex: true,
  },
]

t.test('without PUBLISH_TOKEN there is no /publish', async (t) => {
  for (const broker of ['redis', 'embedded'] as const) {
    const s = await build(t, { broker })
    const res = await post(s, event('x'))
    t.equal(res.status, 404, `${broker}: 404`)
    t.equal(res.json?.code, 'NOTIFY_NOT_FOUND')
  }
  t.throws(
    () => loadConfig({ AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1/me', PUBLISH_TOKEN: 'short-token-15c' }),
    /PUBLISH_TOKEN/,
    'a PUBLISH_TOKEN under 16 characters stops start-up',
  )
})

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker} broker`, async (t) => {
    const s = await build(t, { broker, env: ENV })

    t.test('every error case: the right answer, and nothing published', async (t) => {
      let k = 0
      for (const c of CASES) {
        await t.test(c.name, async (t) => {
          const user = `err-${k++}`
          const stream = await listen(t, s, user)
          const raw = c.raw?.(user)
          const res = await post(s, c.body?.(user), { authorization: c.authorization, contentType: c.contentType, ...(raw !== undefined && { raw }) })
          t.equal(res.status, c.status, `${c.status}: ${res.text.slice(0, 200)}`)
          if (c.answer) t.match(res.json, c.answer)
          if (c.noEventIndex) t.notOk(res.json && 'event' in res.json, 'about the batch, not one event')
          if (c.status === 401) {
            t.equal(res.headers.get('www-authenticate'), 'Bearer realm="publish"', 'WWW-Authenticate names the scheme')
            t.notMatch(res.text, TOKEN, 'the token is not echoed')
          }
          await nothingPublished(t, s, user, stream)
        })
      }
    })

    t.test('202: the shape, and the ids are the SSE ids the streams get', async (t) => {
      const a = await listen(t, s, 'ok-a')
      const b = await listen(t, s, '42')
      const res = await post(s, [
        { recipient_id: 'ok-a', type: 'order.shipped', order: 'A-17' },
        { recipient_ids: ['ok-a', 42, '42'], type: 'invoice.ready', invoice: 'F-1' },
        { recipient_id: 42, note: 'no type' },
      ])
      t.equal(res.status, 202)
      const published = res.json?.published as { event: number; recipient_id: string; id: string }[]
      t.match(res.json, {
        published: [
          { event: 0, recipient_id: 'ok-a', id: ID, live: true, instances: 1 },
          { event: 1, recipient_id: 'ok-a', id: ID, live: true, instances: 1 },
          { event: 1, recipient_id: '42', id: ID, live: true, instances: 1 },
          { event: 2, recipient_id: '42', id: ID, live: true, instances: 1 },
        ],
      })
      t.equal(published.length, 4, 'one entry per (event, distinct recipient)')
      t.same(Object.keys(published[0] ?? {}).sort(), ['event', 'id', 'instances', 'live', 'recipient_id'])

      const ea = await a.nextEvents(2)
      const eb = await b.nextEvents(2)
      t.same(ea.map((e) => e.id), [published[0]?.id, published[1]?.id], 'ok-a: the published ids, in order')
      t.same(eb.map((e) => e.id), [published[2]?.id, published[3]?.id], '42: the published ids, in order')
      t.same(ea.map((e) => e.event), ['order.shipped', 'invoice.ready'])
      t.same(eb.map((e) => e.event), ['invoice.ready', undefined], 'no type: a plain message')
      t.same(JSON.parse(ea[0]?.data ?? ''), { recipient_id: 'ok-a', type: 'order.shipped', order: 'A-17' })
      t.same(JSON.parse(ea[1]?.data ?? ''), { recipient_id: 'ok-a', type: 'invoice.ready', invoice: 'F-1' }, 'its own recipient_id, not the list')
      t.same(JSON.parse(eb[0]?.data ?? ''), { recipient_id: 42, type: 'invoice.ready', invoice: 'F-1' }, 'its own recipient_id, as published')
      t.same(JSON.parse(eb[1]?.data ?? ''), { recipient_id: 42, note: 'no type' })
      t.equal(await stored(s, 'ok-a'), 2)
      t.equal(await stored(s, '42'), 2, 'a recipient named twice gets one copy')
    })

    t.test('202 for a single event (not an array)', async (t) => {
      const stream = await listen(t, s, 'single')
      const res = await post(s, { recipient_id: 'single', type: 'one' })
      t.equal(res.status, 202)
      t.match(res.json, { published: [{ event: 0, recipient_id: 'single', id: ID }] })
      const [e] = await stream.nextEvents(1)
      t.equal(e?.id, (res.json?.published as { id: string }[])[0]?.id)
    })

    t.test('exactly PUBLISH_MAX_EVENTS events is fine', async (t) => {
      const res = await post(s, Array.from({ length: 5 }, (_, k) => event('five', { k })))
      t.equal(res.status, 202)
      t.equal((res.json?.published as unknown[]).length, 5)
    })
  })

  t.test(`${broker} broker, HISTORY_SIZE=0: 202 with id null, delivered without id`, async (t) => {
    const s = await build(t, { broker, env: { ...ENV, HISTORY_SIZE: '0' } })
    const stream = await listen(t, s, 'live')
    const res = await post(s, { recipient_id: 'live', type: 'x' })
    t.equal(res.status, 202)
    t.same(res.json, { published: [{ event: 0, recipient_id: 'live', id: null, live: true, instances: 1 }] })
    const [e] = await stream.nextEvents(1)
    t.equal(e?.event, 'x')
    t.equal(e?.id, undefined)
  })
}

t.test('redis unreachable: 503 with Retry-After, nothing published', { skip: process.env.TEST_REDIS_URL ? 'needs its own redis-server' : false }, async (t) => {
  // Persistent, so that "nothing was stored" can be checked once it is back.
  const redis = await startRedis(t, { persist: true })
  const s = await build(t, { redis, env: ENV })
  const broker = s.app.notifier.broker
  const down = once(broker, 'down')
  await redis.stop()
  await down
  const res = await post(s, [event('down-1'), event('down-2')])
  t.equal(res.status, 503)
  t.match(res.json, { statusCode: 503, code: 'NOTIFY_PUBLISH_UNAVAILABLE' })
  t.match(res.headers.get('retry-after'), /^\d+$/, 'Retry-After in seconds')

  const up = once(broker, 'up')
  await redis.start()
  await up
  t.equal(await stored(s, 'down-1'), 0, 'nothing stored')
  t.equal(await stored(s, 'down-2'), 0)
  const stream = await listen(t, s, 'down-1')
  const again = await post(s, event('down-1'))
  t.equal(again.status, 202, 'accepted again once Redis is back')
  const [e] = await stream.nextEvents(1)
  t.equal(e?.id, (again.json?.published as { id: string }[])[0]?.id)
})
