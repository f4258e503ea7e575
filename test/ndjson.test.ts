// GET /notify with Accept: application/x-ndjson (issue 14, item 4): one JSON
// object per line, with the routing, replay, resync, auth-expired, limits and
// shutdown of an SSE stream; text/event-stream stays the default. Real Redis (or
// the embedded broker), real auth upstream, real sockets; the Python reader is
// test/ndjson-python.test.ts.
import { once } from 'node:events'
import { SignJWT } from 'jose'
import t from 'tap'
import { build } from './helpers/app.js'
import { holdRequest } from './helpers/held-request.js'
import { floodUntilClosed, hubSize, openBacklogged, openStalled } from './helpers/hub.js'
import { openNdjson } from './helpers/ndjson.js'
import { openStream } from './helpers/sse.js'

const ALICE = { authorization: 'Bearer user-alice' }
const EVENT_ID = /^\d+-\d+\.[0-9a-f]{8}$/

t.test('the head, the first lines, and events as objects: type, id when stored, data', async (t) => {
  const s = await build(t, { env: { SSE_RETRY_MS: '2500' } })
  const alice = await openNdjson(t, `${s.base}/notify`, ALICE)
  t.equal(alice.status, 200)
  t.match(alice.headers, {
    'content-type': 'application/x-ndjson; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    connection: 'close',
    vary: 'Accept',
  })
  const [retry, position] = await alice.next(2)
  t.same(retry, { retry: 2500 }, 'first, the reconnection delay')
  t.match(position, { type: 'position', id: EVENT_ID, data: {} }, 'a first visit is told where it stands')

  // One channel, in order: once alice has her event, bob's was routed before it, elsewhere.
  await s.publish({ recipient_id: 'bob', type: 'secret' })
  await s.publish({ recipient_id: 'alice', type: 'order.shipped', id: 'evt-981', order: 'A-17' })
  await s.publish({ recipient_id: 'alice', n: 2 })
  await s.publish({ recipient_ids: ['bob', 'alice'], type: 'both' })
  t.same((await alice.next(5)).slice(2), [
    { type: 'order.shipped', data: { recipient_id: 'alice', type: 'order.shipped', id: 'evt-981', order: 'A-17' } },
    { type: 'message', data: { recipient_id: 'alice', n: 2 } },
    { type: 'both', data: { type: 'both' } },
  ], 'live events: no id, untyped as message, the other recipients unseen')
  // Stored events come on the user's own channel: published once the live ones are in.
  const [stored] = await s.store({ recipient_id: 'alice', type: 'kept', id: 'mine' })
  t.match(stored?.id, EVENT_ID)
  t.same((await alice.next(6))[5], { type: 'kept', id: stored?.id, data: { recipient_id: 'alice', type: 'kept', id: 'mine' } },
    "a stored event: its event id, and the publisher's own id in data")
})

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker}: reconnecting with the last id (header, then query) replays what was missed, once, in order`, async (t) => {
    const s = await build(t, { broker })
    const id = async (n: number) => (await s.store({ recipient_id: 'alice', type: 'note', n }))[0]?.id as string
    await id(1)
    const first = await openNdjson(t, `${s.base}/notify`, ALICE)
    await first.next(2) // retry, position
    const two = await id(2)
    t.match((await first.next(3))[2], { type: 'note', id: two, data: { n: 2 } }, 'live, with its id')
    first.close()
    await hubSize(s.app.notifier.hub, 0)
    const three = await id(3)
    await id(4)

    const back = await openNdjson(t, `${s.base}/notify`, { ...ALICE, 'last-event-id': two })
    const five = await id(5)
    const got = await back.next(4)
    t.same(got.slice(1).map((l) => (l as { data: { n: number } }).data.n), [3, 4, 5], 'replayed 3 and 4, then 5 live')
    t.equal((got[3] as { id: string }).id, five)
    t.notOk(got.some((l) => (l as { type?: string }).type === 'position'), 'a resumed stream is not told its position')
    back.close()

    const query = await openNdjson(t, `${s.base}/notify?lastEventId=${encodeURIComponent(three)}`, ALICE)
    const again = await query.next(3)
    t.same(again.slice(1).map((l) => (l as { data: { n: number } }).data.n), [4, 5], '?lastEventId= as well')
  })
}

t.test('an id that cannot be honoured: a resync object, then the position', async (t) => {
  const s = await build(t)
  for (const [why, headers] of [
    ['malformed', { 'last-event-id': 'nonsense' }],
    ['of another user', { 'last-event-id': '1-0.00000000' }],
  ] as const) {
    const stream = await openNdjson(t, `${s.base}/notify`, { ...ALICE, ...headers })
    const [, resync, position] = await stream.next(3)
    t.same(resync, { type: 'resync', data: {} }, why)
    t.match(position, { type: 'position', id: EVENT_ID, data: {} }, why)
    stream.close()
  }
  t.equal(s.app.notifier.resumer.stats.resyncs.malformed + s.app.notifier.resumer.stats.resyncs.foreign, 2)
})

t.test('an expired token: an auth-expired object, last, then the end', async (t) => {
  // The hub's clock (AppDeps.now) stands short of exp until the test moves it (see test/keep-alive.test.ts).
  const secret = 'ndjson-test-secret-long-enough-for-hs256'
  const exp = Math.floor(Date.now() / 1000) + 600
  let now = exp * 1000 - 250
  const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_SECRET: secret }, deps: { now: () => now } })
  const token = await new SignJWT({ sub: 'alice', exp }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret))
  const stream = await openNdjson(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
  await stream.next(2)
  now = exp * 1000 + 1
  await stream.ended
  t.same(stream.objects().at(-1), { type: 'auth-expired', data: {} })
  t.ok(stream.raw().endsWith('{"type":"auth-expired","data":{}}\n'), 'the last bytes')
})

t.test('heartbeats are empty lines', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { HEARTBEAT_INTERVAL_MS: '100' } })
  const stream = await openNdjson(t, `${s.base}/notify`, ALICE)
  await stream.heartbeats(2)
  t.match(stream.raw(), /^\{"retry":\d+\}\n\{"type":"position",[^\n]*\}\n\n\n/, 'the hello, the position, then LF alone')
  t.same(stream.objects().filter((l) => 'notJson' in (l as object)), [], 'every other line is JSON')
})

t.test('shutdown ends the stream with a retry object', async (t) => {
  const s = await build(t, { env: { SSE_RETRY_MS: '1700' } })
  const stream = await openNdjson(t, `${s.base}/notify`, ALICE)
  await stream.next(2)
  await s.app.close()
  await stream.ended
  t.ok(stream.raw().endsWith('{"retry":1700}\n'), 'the last line')
  t.equal(s.app.notifier.hub.stats.closed.shutdown, 1)
})

t.test('while draining, an NDJSON request gets a retry object, without auth', async (t) => {
  const s = await build(t, { env: { SHUTDOWN_TIMEOUT_MS: '6000', SSE_RETRY_MS: '1500', SSE_MAX_BUFFER_BYTES: '8388608' } })
  // A client that stopped reading keeps the drain going (test/shutdown.test.ts).
  await openBacklogged(t, s, 'stuck')
  // New connections are refused while draining: the request comes on one in use.
  const held = await holdRequest(t, s.base, '/notify', { accept: 'application/x-ndjson', authorization: 'Bearer user-late' })
  const ending = once(s.app.notifier.hub, 'close')
  const closing = s.app.close()
  await ending
  const calls = s.upstream.totalCalls()
  const late = await held.complete()
  t.equal(late.status, 200)
  t.equal(late.headers['content-type'], 'application/x-ndjson; charset=utf-8')
  t.equal(late.body, '{"retry":1500}\n')
  t.equal(s.upstream.totalCalls(), calls)
  await closing
})

t.test('negotiation on the wire', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { CORS_ORIGINS: 'https://app.example' } })
  const type = async (accept: string) => {
    const res = await fetch(`${s.base}/notify`, { headers: { ...ALICE, accept } })
    await res.body?.cancel()
    return res.headers.get('content-type')
  }
  // No Accept at all: the raw request of openStalled.
  await openStalled(t, s, 'user-raw')
  t.equal(s.app.notifier.hub.streamsOf(['raw'])[0]?.framer.format, 'sse', 'no Accept: SSE')
  t.equal(await type('*/*'), 'text/event-stream; charset=utf-8', '*/* (curl, fetch, requests): SSE')
  t.equal(await type('text/event-stream;q=0.5, application/x-ndjson'), 'application/x-ndjson; charset=utf-8', 'by weight')
  t.equal(await type('application/*'), 'application/x-ndjson; charset=utf-8')

  const calls = s.upstream.totalCalls()
  const refused = await fetch(`${s.base}/notify`, { headers: { accept: 'application/json', origin: 'https://app.example' } })
  t.equal(refused.status, 406, 'neither format: 406, before credentials are looked at')
  t.match(await refused.json(), { statusCode: 406, code: 'NOTIFY_NOT_ACCEPTABLE' })
  t.match(refused.headers.get('vary'), /^Origin, Accept$/i, 'Vary names Accept beside CORS Origin')
  t.equal(s.upstream.totalCalls(), calls, 'no auth call for the refusal')
})

t.test('limits are shared: a user at MAX_CONNECTIONS_PER_USER gets 429 in either format', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { MAX_CONNECTIONS_PER_USER: '1' } })
  const sse = await openStream(t, `${s.base}/notify`, ALICE)
  t.equal(sse.status, 200)
  const refused = await openNdjson(t, `${s.base}/notify`, ALICE)
  t.equal(refused.status, 429)
  t.match(JSON.parse(refused.raw()), { code: 'NOTIFY_TOO_MANY_USER_STREAMS' })
})

t.test('an NDJSON reader that stops reading is closed as slow; others keep receiving', async (t) => {
  const s = await build(t, { env: { SSE_MAX_BUFFER_BYTES: '65536', MAX_EVENT_BYTES: '16384' } })
  const healthy = await openNdjson(t, `${s.base}/notify`, { authorization: 'Bearer user-fast' })
  await openStalled(t, s, 'user-slow', { accept: 'application/x-ndjson' })
  const [slow] = s.app.notifier.hub.streamsOf(['slow'])
  t.equal(slow?.framer.format, 'ndjson')
  t.equal(await floodUntilClosed(s, 'slow'), 'slow')
  await s.publish({ recipient_id: 'fast', type: 'still-fine' })
  t.match((await healthy.next(3))[2], { type: 'still-fine' })
})
