// A Redis that stops answering without closing its connections (a hung
// process, a partition; SIGSTOP reproduces it): every call has a deadline,
// /publish says 503 within it (the event's fate unknown, so a retry with the
// same Idempotency-Key is the safe one), a new stream gets `retry:` and ends
// within it, /readyz turns 503, and it all recovers by itself when Redis
// answers again: open streams catch up from history, exactly once.
import { once } from 'node:events'
import t from 'tap'
import { build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream } from './helpers/sse.js'

const NEEDS_OWN_REDIS = process.env.TEST_REDIS_URL ? 'TEST_REDIS_URL is set: cannot pause that server' : false
const TOKEN = 'publish-token-0123456789abcdef'
const BOUND = 500
/** What the machine may add to a bound: generous, this is about "not 30 s", not about speed. */
const SLACK = 2500

t.test('a hung Redis: bounded calls, truthful readiness, recovery without a restart', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: { PUBLISH_TOKEN: TOKEN, REDIS_COMMAND_TIMEOUT_MS: String(BOUND) } })
  const broker = s.app.notifier.broker
  const publish = async (key: string) => {
    const started = performance.now()
    const res = await fetch(`${s.base}/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, 'idempotency-key': key },
      body: JSON.stringify({ recipient_id: 'alice', type: 'during' }),
    })
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown>, ms: performance.now() - started }
  }
  const alice = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-alice' })
  const [before] = await s.store({ recipient_id: 'alice', type: 'before' })
  t.equal((await alice.nextEvents(1))[0]?.id, before?.id)

  const down = once(broker, 'down')
  redis.pause()
  t.teardown(() => redis.resume())

  const hung = await publish('during-the-hang')
  t.equal(hung.status, 503, '/publish answers 503')
  t.match(hung.body.code, /^NOTIFY_PUBLISH_(OUTCOME_UNKNOWN|UNAVAILABLE)$/)
  t.ok(hung.headers.get('retry-after'), 'with Retry-After')
  t.ok(hung.ms < BOUND + SLACK, `within the bound (${hung.ms.toFixed(0)} ms for ${BOUND} ms)`)

  await down
  const ready = await fetch(`${s.base}/readyz`)
  t.equal(ready.status, 503, '/readyz says not ready while Redis hangs')
  t.match(await ready.json(), { redis: 'down' })

  const started = performance.now()
  const bob = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-bob' })
  await bob.ended
  const took = performance.now() - started
  t.equal(bob.status, 200, 'a new stream is answered (a plain EventSource would give up on a 503)')
  t.equal(bob.retry.at(-1), 3000, 'with retry: last, then ended')
  t.equal(bob.events.length, 0)
  t.ok(took < BOUND + SLACK, `ended within the bound (${took.toFixed(0)} ms)`)
  t.equal(s.app.notifier.hub.countOf('alice'), 1, 'the open stream stays open')

  const up = once(broker, 'up')
  redis.resume()
  await up
  t.equal((await fetch(`${s.base}/readyz`)).status, 200, 'ready again, by itself')

  // The first attempt may have run once Redis woke up (its command was on the
  // wire): the retry with the same key publishes it at most once.
  const retried = await publish('during-the-hang')
  t.equal(retried.status, 202)
  const id = (retried.body.published as { id: string }[])[0]?.id
  const [sentinel] = await s.store({ recipient_id: 'alice', type: 'sentinel' })
  const events = await alice.nextEvents(3)
  t.same(
    events.map((e) => [e.event, e.id]),
    [['before', before?.id], ['during', id], ['sentinel', sentinel?.id]],
    'alice: the event published during the hang exactly once, then live again',
  )
  t.equal(await redis.client().xlen('notifications:history:{alice}'), 3, 'stored once')
  const later = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-bob' })
  t.equal(later.status, 200)
  await s.store({ recipient_id: 'bob', type: 'hello' })
  t.equal((await later.nextEvents(1))[0]?.event, 'hello', 'new streams work again')
})

t.test('shutdown while Redis hangs: the drain ends within the command bound, not at SHUTDOWN_TIMEOUT_MS', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: { REDIS_COMMAND_TIMEOUT_MS: String(BOUND), SHUTDOWN_TIMEOUT_MS: '60000' } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-alice' })
  redis.pause()
  t.teardown(() => redis.resume())
  const started = performance.now()
  await s.app.close()
  const took = performance.now() - started
  await stream.ended
  // QUIT gets one bound on the subscriber connections, then one on the others.
  t.ok(took < 2 * BOUND + SLACK, `close() took ${took.toFixed(0)} ms (QUIT bounded by ${BOUND} ms)`)
})
