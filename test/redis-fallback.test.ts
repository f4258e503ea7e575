// A Redis without sharded pub/sub (before 7.0, or with SSUBSCRIBE and SPUBLISH
// renamed away, as some managed services do): the service says so once at
// start and falls back to the classic channel for everything; the script falls
// back with it. Nothing is lost; every instance pays for every event, as before
// per-user routing.
import t from 'tap'
import type { RedisBroker } from '../src/broker/redis-broker.js'
import { createPublisher } from '../src/publisher.js'
import { build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream } from './helpers/sse.js'

const NEEDS_OWN_REDIS = process.env.TEST_REDIS_URL ? 'TEST_REDIS_URL is set: cannot start a Redis without sharded pub/sub' : false
const WITHOUT_SHARDED = ['SSUBSCRIBE', 'SUNSUBSCRIBE', 'SPUBLISH'].flatMap((c) => ['--rename-command', c, `${c}-renamed-away`])

t.test('no sharded pub/sub: one warning, classic routing, nothing lost', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t, { args: WITHOUT_SHARDED })
  const a = await build(t, { redis })
  const b = await build(t, { redis })
  const auth = { authorization: 'Bearer user-alice' }
  const alice = await openStream(t, `${a.base}/notify`, auth)
  const published = await b.store([1, 2, 3].map((n) => ({ recipient_id: 'alice', type: 'n', n })))
  const viaLibrary = await createPublisher({ redis: redis.client() }).publish({ recipient_id: 'alice', type: 'n', n: 4 })
  const events = await alice.nextEvents(4)
  t.same(
    events.map((e) => e.id),
    [...published, ...viaLibrary].map((p) => p.id),
    'stored events delivered live, once, in order, whichever instance or library published them',
  )

  const warnings = (s: typeof a) => s.logs.filter((l) => String(l.msg).includes('no sharded pub/sub'))
  t.equal(warnings(a).length, 1, 'A warned once')
  t.equal(warnings(b).length, 1, 'B warned once')
  const subs = (s: typeof a) => (s.app.notifier.broker as RedisBroker).subscriptions
  t.equal(subs(a).sharded, false)
  t.equal(subs(a).channels, 0, 'no user channels')
  t.equal(subs(b).received.classic, 4, 'B takes every event off the classic channel, as before per-user routing')

  // Replay from history is unchanged.
  alice.close()
  const [missed] = await b.store({ recipient_id: 'alice', type: 'n', n: 5 })
  const back = await openStream(t, `${a.base}/notify`, { ...auth, 'last-event-id': events.at(-1)?.id as string })
  t.equal((await back.nextEvents(1))[0]?.id, missed?.id, 'what was missed is replayed')
})
