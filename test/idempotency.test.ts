// Idempotency-Key on POST /publish (and the publisher's idempotencyKey): a
// retry within IDEMPOTENCY_TTL_S stores and publishes nothing new and answers
// the first ids; the same key with other events is refused (422) before
// anything is published. Both brokers, and the script itself for callers in
// other languages.
import t from 'tap'
import { PUBLISH_SCRIPT } from '../src/broker/publish-script.js'
import type { MemoryBroker } from '../src/broker/memory-broker.js'
import { createPublisher, IdempotencyConflict } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

const TOKEN = 'publish-token-0123456789abcdef'
const ENV = { PUBLISH_TOKEN: TOKEN }

interface Answer {
  status: number
  json: Record<string, unknown>
}

async function post(s: Built, body: unknown, key?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }
  if (key !== undefined) headers['idempotency-key'] = key
  const res = await fetch(`${s.base}/publish`, { method: 'POST', headers, body: JSON.stringify(body) })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

async function stored(s: Built, user: string): Promise<number> {
  if (s.broker === 'redis') return s.redis.client().xlen(`notifications:history:{${user}}`)
  return (s.app.notifier.broker as MemoryBroker).history.read(user, { ms: 0, seq: 0 }).range.length
}

/** The ids of what the stream got from event `from` on, up to a sentinel published now: proves nothing else is on its way. */
async function untilSentinel(s: Built, stream: TestStream, user: string, from = stream.events.length): Promise<string[]> {
  const [sentinel] = await s.store({ recipient_id: user, type: 'sentinel' })
  for (let n = from + 1; ; n++) {
    const events = await stream.nextEvents(n)
    if (events.at(-1)?.id === sentinel?.id) return events.slice(from, -1).map((e) => e.id ?? '')
  }
}

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker}: a retry with the same key publishes nothing new and answers the first ids`, async (t) => {
    const s = await build(t, { broker, env: ENV })
    const alice = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-alice' })
    const batch = [
      { recipient_ids: ['alice', 'bob'], type: 'order.shipped', order: 'A-17' },
      { recipient_id: 'alice', type: 'order.shipped', order: 'A-18' },
    ]
    const first = await post(s, batch, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    t.equal(first.status, 202)
    const again = await post(s, batch, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    t.equal(again.status, 202, 'the retry is answered as the first was')
    // A retry publishes nothing: whether the first reached anyone live is not known any more.
    const retried = { published: (first.json.published as object[]).map((p) => ({ ...p, live: null, instances: null })) }
    t.same(again.json, retried, 'with the first ids')
    const bare = await post(s, batch, '8e03978e-40d5-43e8-bc93-6894a57f9324')
    t.same(bare.json, retried, 'the key unquoted is the same key')
    t.equal(await stored(s, 'alice'), 2, "alice's two events stored once")
    t.equal(await stored(s, 'bob'), 1)
    const ids = (first.json.published as { recipient_id: string; id: string }[]).filter((p) => p.recipient_id === 'alice').map((p) => p.id)
    t.same(await untilSentinel(s, alice, 'alice', 0), ids, 'the stream got each once')

    const other = await post(s, batch, 'another-key')
    t.equal(other.status, 202)
    t.not((other.json.published as { id: string }[])[0]?.id, (first.json.published as { id: string }[])[0]?.id, 'another key is another publish')
    t.equal(await stored(s, 'alice'), 5, 'another key stores again (and the sentinel)')
  })

  t.test(`${broker}: the same key with other events is refused, nothing published`, async (t) => {
    const s = await build(t, { broker, env: ENV })
    const alice = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-alice' })
    t.equal((await post(s, { recipient_id: 'alice', type: 'a', n: 1 }, 'k-1')).status, 202)
    const before = await untilSentinel(s, alice, 'alice', 0)
    // Event 0 differs; event 1 has no marker yet: without the check up front it would be published.
    const conflict = await post(s, [{ recipient_id: 'alice', type: 'a', n: 2 }, { recipient_id: 'alice', type: 'a', n: 3 }], 'k-1')
    t.equal(conflict.status, 422)
    t.equal(conflict.json.code, 'NOTIFY_IDEMPOTENCY_CONFLICT')
    t.same(await untilSentinel(s, alice, 'alice'), [], 'nothing of it reached the stream')
    t.equal(before.length, 1)
    t.equal(await stored(s, 'alice'), 3, 'the first event and two sentinels')
  })

  t.test(`${broker}: a bad key is a 400 and costs nothing`, async (t) => {
    const s = await build(t, { broker, env: ENV })
    for (const key of ['x'.repeat(129), 'with space', '""']) {
      const res = await fetch(`${s.base}/publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, 'idempotency-key': key },
        body: JSON.stringify({ recipient_id: 'alice' }),
      })
      t.equal(res.status, 400, `${key.slice(0, 12)}…`)
      t.equal(((await res.json()) as { code: string }).code, 'NOTIFY_INVALID_IDEMPOTENCY_KEY')
    }
    t.equal(await stored(s, 'alice'), 0)
  })

  t.test(`${broker}: the key is forgotten after IDEMPOTENCY_TTL_S`, async (t) => {
    let now = Date.now()
    const s = await build(t, { broker, env: { ...ENV, IDEMPOTENCY_TTL_S: '1' }, deps: { now: () => now } })
    const one = { recipient_id: 'alice', type: 'a' }
    const first = await post(s, one, 'ttl')
    if (broker === 'redis') {
      // Redis expires the marker on its own clock.
      const marker = 'notifications:idem:{alice}:ttl:0'
      t.ok((await s.redis.client().pttl(marker)) <= 1000, 'the marker lives IDEMPOTENCY_TTL_S')
      await s.redis.client().del(marker)
    } else {
      now += 1001
    }
    const later = await post(s, one, 'ttl')
    t.not((later.json.published as { id: string }[])[0]?.id, (first.json.published as { id: string }[])[0]?.id, 'published anew')
    t.equal(await stored(s, 'alice'), 2)
  })
}

t.test('createPublisher: idempotencyKey, and IdempotencyConflict for other events', async (t) => {
  const redis = await startRedis(t)
  const notify = createPublisher({ redis: redis.client() })
  const a = await notify.publish({ recipient_id: 'ann', type: 'x', n: 1 }, { idempotencyKey: 'job-17' })
  const b = await notify.publish({ recipient_id: 'ann', type: 'x', n: 1 }, { idempotencyKey: 'job-17' })
  t.same(b, a.map((p) => ({ ...p, live: null, instances: null })), 'the first ids; live unknown (nothing published)')
  t.equal(await redis.client().xlen('notifications:history:{ann}'), 1)
  await t.rejects(notify.publish({ recipient_id: 'ann', type: 'x', n: 2 }, { idempotencyKey: 'job-17' }), IdempotencyConflict)
  await t.rejects(notify.publish({ recipient_id: 'ann' }, { idempotencyKey: '' }), { code: 'NOTIFY_INVALID_IDEMPOTENCY_KEY' })
})

t.test('the script with an idempotency key, as another language would call it', async (t) => {
  const redis = await startRedis(t)
  const db = redis.client()
  const keys = ['notifications:history:{42}', 'notifications:idem:{42}:order-A-17']
  const args = ['notifications', '42', 'order.shipped', '{"recipient_id":42,"order":"A-17"}', 100, 86400, 'shard', 'order-A-17', 600]
  const first = await db.eval(PUBLISH_SCRIPT, 2, ...keys, ...args)
  const second = await db.eval(PUBLISH_SCRIPT, 2, ...keys, ...args)
  t.equal(second, first, 'the first id again')
  t.equal(await db.xlen(keys[0] as string), 1)
  const ttl = await db.ttl(keys[1] as string)
  t.ok(ttl > 590 && ttl <= 600, `the marker expires (${ttl} s)`)
  await t.rejects(
    db.eval(PUBLISH_SCRIPT, 2, ...keys, 'notifications', '42', 'order.shipped', '{"other":1}', 100, 86400, 'shard', 'order-A-17', 600),
    /NOTIFY_IDEMPOTENCY_CONFLICT/,
  )
  await t.rejects(
    db.eval(PUBLISH_SCRIPT, 2, 'notifications:history:{42}', 'notifications:idem:{43}:k', 'notifications', '42', '', '{}', 1, 1, 'shard', 'k', 1),
    /key 2 must be notifications:idem:\{42\}:k/,
    'a marker of another recipient (another slot) is refused',
  )
})

