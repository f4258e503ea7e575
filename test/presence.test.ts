// Presence on one Redis server (two instances) and on the embedded broker:
// GET /presence/<user> and POST /presence say whether a user has a stream open
// anywhere, the same whichever instance is asked, as streams open and close on
// either; POST /publish and createPublisher say whether each (event,
// recipient) was delivered live and to how many instances. Protected like
// /publish; bounded input; 503 while Redis is away; unknown (null), not a
// guess, where Redis cannot tell (no sharded pub/sub, the classic copy).
import { once } from 'node:events'
import t from 'tap'
import { createPublisher } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { closed, getPresence, PRESENCE_TOKEN, postPresence, presenceOf } from './helpers/presence.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

const ENV = { PUBLISH_TOKEN: PRESENCE_TOKEN, PRESENCE_MAX_USERS: '3' }
const listen = (t: Parameters<typeof openStream>[0], s: Built, user: string): Promise<TestStream> =>
  openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${user}` })

async function publish(s: Built, body: unknown): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${s.base}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PRESENCE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = (await res.json()) as { published: Record<string, unknown>[] }
  if (res.status !== 202) throw new Error(`POST /publish: ${res.status} ${JSON.stringify(json)}`)
  return json.published
}

t.test('two instances, one Redis: online and offline as streams open and close, whoever is asked', async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const a = await build(t, { redis, env: ENV })
  const b = await build(t, { redis, env: ENV })
  const both = async (users: string[]) => {
    const [fromA, fromB] = await Promise.all([presenceOf(a, users), presenceOf(b, users)])
    t.same(fromB, fromA, 'both instances give the same answer')
    return fromA
  }
  const users = ['alice', 'bob']
  t.same(await both(users), { alice: 0, bob: 0 }, 'nobody online')

  const onA = await listen(t, a, 'alice')
  t.same(await both(users), { alice: 1, bob: 0 }, 'alice on A: online for both instances')
  t.same((await getPresence(b, 'alice')).json, { user_id: 'alice', online: true, instances: 1 }, 'GET /presence/alice on B')
  const onB = await listen(t, b, 'alice')
  t.same(await both(users), { alice: 2, bob: 0 }, 'alice on A and B: two instances')
  await listen(t, b, 'alice')
  t.same(await both(users), { alice: 2, bob: 0 }, 'a second tab on B: still two instances')

  // Delivered live, and to how many instances, per (event, recipient).
  const published = await publish(b, [{ recipient_ids: ['alice', 'bob'], type: 'n' }, { recipient_id: 'bob', live_only: true }])
  t.match(published, [
    { event: 0, recipient_id: 'alice', live: true, instances: 2 },
    { event: 0, recipient_id: 'bob', live: false, instances: 0 },
    { event: 1, recipient_id: 'bob', id: null, live: false, instances: 0 },
  ])
  const viaLibrary = await createPublisher({ redis: redis.client() }).publish([{ recipient_id: 'alice' }, { recipient_id: 'bob' }])
  t.match(viaLibrary, [{ recipient_id: 'alice', live: true, instances: 2 }, { recipient_id: 'bob', live: false, instances: 0 }], 'createPublisher too')

  onA.close()
  await closed(a, admin, 'alice', { streams: 0, channels: 0, subscribers: 1 })
  t.same(await both(users), { alice: 1, bob: 0 }, "A's stream closed: one instance left")
  t.match(await publish(a, { recipient_id: 'alice' }), [{ live: true, instances: 1 }])
  onB.close()
  await closed(b, admin, 'alice', { streams: 1, channels: 1, subscribers: 1 })
  t.same(await both(users), { alice: 1, bob: 0 }, 'one of two tabs on B closed: still online')
})

t.test('two instances: the last stream closed, the user is offline everywhere', async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const a = await build(t, { redis, env: ENV })
  const b = await build(t, { redis, env: ENV })
  const stream = await listen(t, b, 'carol')
  t.same(await presenceOf(a, ['carol']), { carol: 1 })
  stream.close()
  await closed(b, admin, 'carol', { streams: 0, channels: 0, subscribers: 0 })
  t.same(await presenceOf(a, ['carol']), { carol: 0 }, 'offline, asked of A')
  t.same(await presenceOf(b, ['carol']), { carol: 0 }, 'offline, asked of B')
  t.match(await publish(a, { recipient_id: 'carol' }), [{ live: false, instances: 0 }], 'published to nobody live')
})

t.test('embedded broker: this process holds a stream or not', async (t) => {
  const s = await build(t, { broker: 'embedded', env: ENV })
  t.same(await presenceOf(s, ['dave', '42']), { dave: 0, 42: 0 })
  const dave = await listen(t, s, 'dave')
  const tab = await listen(t, s, 'dave')
  t.same((await postPresence(s, ['dave', 42, '42'])).json, {
    presence: [
      { user_id: 'dave', online: true, instances: 1 },
      { user_id: '42', online: false, instances: 0 },
      { user_id: '42', online: false, instances: 0 },
    ],
  }, 'in order; 42 and "42" are one user, as recipients')
  t.match(await publish(s, [{ recipient_id: 'dave' }, { recipient_id: 42 }]), [
    { recipient_id: 'dave', live: true, instances: 1 },
    { recipient_id: '42', live: false, instances: 0 },
  ])
  dave.close()
  await hubSize(s.app.notifier.hub, 1)
  t.same(await presenceOf(s, ['dave']), { dave: 1 }, 'one tab left')
  tab.close()
  await hubSize(s.app.notifier.hub, 0)
  t.same(await presenceOf(s, ['dave']), { dave: 0 }, 'the last one closed')
  t.match(await publish(s, { recipient_id: 'dave' }), [{ live: false, instances: 0 }])
})

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker} broker: a retry with the same Idempotency-Key publishes nothing: live unknown`, async (t) => {
    const s = await build(t, { broker, env: ENV })
    await listen(t, s, 'erin')
    const send = () =>
      fetch(`${s.base}/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${PRESENCE_TOKEN}`, 'content-type': 'application/json', 'idempotency-key': 'k-1' },
        body: JSON.stringify({ recipient_id: 'erin', n: 1 }),
      }).then(async (res) => ((await res.json()) as { published: unknown[] }).published)
    const first = (await send()) as { id: string }[]
    t.match(first, [{ live: true, instances: 1 }])
    t.same(await send(), [{ event: 0, recipient_id: 'erin', id: first[0]?.id, live: null, instances: null }])
  })

  t.test(`${broker} broker: refused requests`, async (t) => {
    const s = await build(t, { broker, env: ENV })
    const cases: [string, () => Promise<{ status: number; headers: Headers; json: Record<string, unknown> }>, number, string][] = [
      ['GET, no token', () => getPresence(s, 'u', null), 401, 'NOTIFY_PUBLISH_UNAUTHORIZED'],
      ['GET, wrong token', () => getPresence(s, 'u', `Bearer ${PRESENCE_TOKEN}x`), 401, 'NOTIFY_PUBLISH_UNAUTHORIZED'],
      ['POST, no token', () => postPresence(s, ['u'], { authorization: null }), 401, 'NOTIFY_PUBLISH_UNAUTHORIZED'],
      ['POST, another scheme', () => postPresence(s, ['u'], { authorization: `Basic ${PRESENCE_TOKEN}` }), 401, 'NOTIFY_PUBLISH_UNAUTHORIZED'],
      ['GET, id starting with }', () => getPresence(s, '}x'), 400, 'NOTIFY_INVALID_USER'],
      ['GET, empty id', () => getPresence(s, ''), 400, 'NOTIFY_INVALID_USER'],
      ['GET, 257 characters', () => getPresence(s, 'x'.repeat(257)), 400, 'NOTIFY_INVALID_USER'],
      ['POST, not a list', () => postPresence(s, { users: ['u'] }), 400, 'NOTIFY_INVALID_USER'],
      ['POST, a float', () => postPresence(s, ['u', 1.5]), 400, 'NOTIFY_INVALID_USER'],
      ['POST, an empty id', () => postPresence(s, ['']), 400, 'NOTIFY_INVALID_USER'],
      ['POST, an object', () => postPresence(s, [{}]), 400, 'NOTIFY_INVALID_USER'],
      ['POST, too many users', () => postPresence(s, ['a', 'b', 'c', 'd']), 413, 'NOTIFY_TOO_MANY_USERS'],
      ['POST, not JSON', () => postPresence(s, null, { raw: 'u', contentType: 'text/plain' }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ]
    for (const [name, ask, status, code] of cases) {
      const res = await ask()
      t.equal(res.status, status, `${name}: ${status}`)
      t.equal(res.json.code, code, `${name}: ${code}`)
      if (status === 401) t.equal(res.headers.get('www-authenticate'), 'Bearer realm="publish"')
    }
    t.match((await postPresence(s, ['u', 1.5])).json.message, /user 1: /, 'the message names the offending entry')
    // At the bounds: PRESENCE_MAX_USERS users, a 256-character id, an id with a slash.
    t.equal((await postPresence(s, ['a', 'b', 'c'])).status, 200, 'exactly PRESENCE_MAX_USERS')
    t.same((await getPresence(s, 'é'.repeat(256))).json, { user_id: 'é'.repeat(256), online: false, instances: 0 }, '256 characters')
    t.same((await getPresence(s, 'a/b')).json, { user_id: 'a/b', online: false, instances: 0 }, 'an id with a slash')
  })
}

t.test('without PUBLISH_TOKEN there is no presence', async (t) => {
  const s = await build(t, { broker: 'embedded' })
  t.equal((await getPresence(s, 'u')).status, 404)
  t.equal((await postPresence(s, ['u'])).status, 404)
})

t.test('redis unreachable: 503 with Retry-After', { skip: process.env.TEST_REDIS_URL ? 'needs its own redis-server' : false }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: ENV })
  const down = once(s.app.notifier.broker, 'down')
  await redis.stop()
  await down
  for (const res of [await getPresence(s, 'u'), await postPresence(s, ['u'])]) {
    t.equal(res.status, 503)
    t.match(res.json, { code: 'NOTIFY_PRESENCE_UNAVAILABLE' })
    t.match(res.headers.get('retry-after'), /^\d+$/)
  }
  const up = once(s.app.notifier.broker, 'up')
  await redis.start()
  await up
  t.equal((await getPresence(s, 'u')).status, 200, 'answers again once Redis is back')
})

const WITHOUT_SHARDED = ['SSUBSCRIBE', 'SUNSUBSCRIBE', 'SPUBLISH'].flatMap((c) => ['--rename-command', c, `${c}-renamed-away`])

t.test('no sharded pub/sub: presence and live are unknown (null), not a guess', { skip: process.env.TEST_REDIS_URL ? 'needs its own redis-server' : false }, async (t) => {
  const redis = await startRedis(t, { args: WITHOUT_SHARDED })
  const s = await build(t, { redis, env: ENV })
  const stream = await listen(t, s, 'fay')
  t.same((await postPresence(s, ['fay', 'gus'])).json, {
    presence: [
      { user_id: 'fay', online: null, instances: null },
      { user_id: 'gus', online: null, instances: null },
    ],
  })
  t.match(await publish(s, { recipient_id: 'fay' }), [{ live: null, instances: null }], 'PUBLISH on the classic channel counts every instance')
  await stream.nextEvents(1)
})

t.test('PUBLISH_CLASSIC_COPY: live when an instance of this version holds a stream, unknown otherwise', async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: { ...ENV, PUBLISH_CLASSIC_COPY: 'true' } })
  await listen(t, s, 'hal')
  t.match(await publish(s, [{ recipient_id: 'hal' }, { recipient_id: 'ida' }]), [
    { recipient_id: 'hal', live: true, instances: 1 },
    // An instance of an older version reads the classic copy and is not counted.
    { recipient_id: 'ida', live: null, instances: 0 },
  ])
})
