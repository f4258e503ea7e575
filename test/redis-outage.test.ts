// Redis going away: open streams stay open, the subscriber comes back by
// itself, /readyz tells the truth throughout.
import { once } from 'node:events'
import t from 'tap'
import { build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream } from './helpers/sse.js'

// Stopping and restarting Redis needs a server these tests started themselves.
const NEEDS_OWN_REDIS = process.env.TEST_REDIS_URL ? 'TEST_REDIS_URL is set: cannot restart that server' : false

t.test('redis restarted under open streams', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: { HEARTBEAT_INTERVAL_MS: '50' } })
  const sub = s.app.notifier.broker
  const streams = await Promise.all(
    ['a', 'b', 'c'].map((u) => openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${u}` })),
  )
  t.equal((await s.app.inject('/readyz')).statusCode, 200)

  const down = once(sub, 'down')
  await redis.stop()
  await down
  const notReady = await s.app.inject('/readyz')
  t.equal(notReady.statusCode, 503)
  t.match(notReady.json(), { status: 'not ready', redis: 'down' })
  t.equal((await s.app.inject('/healthz')).statusCode, 200, 'the process is still healthy')

  // Streams stay open while Redis is away: they keep getting heartbeats.
  const seen = streams.map((st) => st.comments.length)
  await Promise.all(streams.map((st, i) => st.nextComments((seen[i] ?? 0) + 2)))
  t.equal(s.app.notifier.hub.size, 3)

  const up = once(sub, 'up')
  await redis.start()
  await up
  t.equal((await s.app.inject('/readyz')).statusCode, 200)

  await s.publish({ recipient_id: 'b', type: 'after-restart' })
  await s.publish({ recipient_id: 'a', type: 'after-restart' })
  t.equal((await streams[0]!.nextEvents(1))[0]?.event, 'after-restart')
  t.equal((await streams[1]!.nextEvents(1))[0]?.event, 'after-restart')
  t.equal(streams[2]!.events.length, 0)
})

t.test('the subscriber connection killed by the server is re-established', async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  const admin = s.redis.client()
  const sub = s.app.notifier.broker
  const cycle = new Promise<void>((resolve) => sub.once('down', () => sub.once('up', resolve)))
  t.equal(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, 'exactly one subscriber connection in this process')
  await cycle
  await s.publish({ recipient_id: '1', type: 'after-kill' })
  t.equal((await stream.nextEvents(1))[0]?.event, 'after-kill')
})

t.test('started while redis is down: not ready, then ready when it appears', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  await redis.stop()
  const s = await build(t, { redis, waitForRedis: false })
  t.equal((await s.app.inject('/readyz')).statusCode, 503)
  t.equal((await s.app.inject('/healthz')).statusCode, 200)
  const up = once(s.app.notifier.broker, 'up')
  await redis.start()
  await up
  t.equal((await s.app.inject('/readyz')).statusCode, 200)
})
