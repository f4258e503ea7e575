// Per-user routing (user channels) on one Redis server, two instances: an instance takes off
// Redis only the events of users who have a stream on it (their own channel,
// sharded pub/sub), subscribes with a user's first stream and unsubscribes
// after the last, batches a connect storm into a few commands, and confirms a
// stream's subscription before it reads that stream's place in the history.
import { once } from 'node:events'
import { connect } from 'node:net'
import type { Redis } from 'ioredis'
import t from 'tap'
import { liveChannel } from '../src/broker/keys.js'
import type { RedisBroker } from '../src/broker/redis-broker.js'
import { type Built, build } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { metricsOf } from './helpers/metrics.js'
import { startHoldProxy } from './helpers/hold-proxy.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })
const subscriptionsOf = (s: Built) => (s.app.notifier.broker as RedisBroker).subscriptions

/** How many connections Redis says are subscribed to each user's own channel. */
async function shardSubscribers(admin: Redis, users: string[]): Promise<number[]> {
  const reply = (await admin.call('PUBSUB', 'SHARDNUMSUB', ...users.map((u) => liveChannel('notifications', u)))) as (string | number)[]
  return users.map((_, i) => Number(reply[2 * i + 1]))
}

/** Resolves once the instance has no user channel left (subscriptions.ts unsubscribes in its next pass). */
async function channelsDrop(s: Built, n: number): Promise<void> {
  const subs = subscriptionsOf(s)
  while (subs.channels !== n) await new Promise((resolve) => setImmediate(resolve))
}

t.test('an instance takes off Redis only the events of its own users', async (t) => {
  const redis = await startRedis(t)
  const a = await build(t, { redis })
  const b = await build(t, { redis })
  const alice = await openStream(t, `${a.base}/notify`, auth('alice'))
  const bob = await openStream(t, `${a.base}/notify`, auth('bob'))
  const carol = await openStream(t, `${b.base}/notify`, auth('carol'))
  const before = { a: { ...subscriptionsOf(a).received }, b: { ...subscriptionsOf(b).received } }

  // Published through B (its /publish path), for A's users only.
  const N = 40
  for (let n = 1; n <= N; n++) await b.store({ recipient_id: n % 2 === 0 ? 'alice' : 'bob', type: 'note', n })
  const sent = (user: string) => Array.from({ length: N }, (_, i) => i + 1).filter((n) => (n % 2 === 0) === (user === 'alice'))
  t.same((await alice.nextEvents(N / 2)).map((e) => JSON.parse(e.data).n), sent('alice'), 'alice: hers, in order')
  t.same((await bob.nextEvents(N / 2)).map((e) => JSON.parse(e.data).n), sent('bob'), 'bob: his, in order')
  // One event to carol, on B, after all of them: once it has arrived, anything
  // of alice's or bob's that B had been sent would have arrived before it.
  await a.store({ recipient_id: 'carol', type: 'note', n: 0 })
  t.same((await carol.nextEvents(1)).map((e) => JSON.parse(e.data).n), [0])

  const got = { a: subscriptionsOf(a).received, b: subscriptionsOf(b).received }
  t.equal(got.a.user - before.a.user, N, 'A took off Redis exactly the events of its users')
  t.equal(got.b.user - before.b.user, 1, "B took off Redis only carol's event")
  t.equal(got.b.classic - before.b.classic, 0, 'and nothing on the classic channel')
  t.equal(got.a.classic - before.a.classic, 0, 'nothing on the classic channel for stored events')
  const m = await metricsOf(b.base)
  t.equal(m.value('notify_redis_messages_total', { channel: 'user' }), got.b.user, '/metrics shows the instance cost')
  t.equal(m.value('notify_redis_user_channels'), 1, "B holds carol's channel only")
  t.equal(m.value('notify_redis_subscriber_connections'), 1)
  t.equal(carol.events.length, 1, 'carol got nothing else')
})

t.test('a plain PUBLISH still reaches every instance (the classic channel)', async (t) => {
  const redis = await startRedis(t)
  const a = await build(t, { redis })
  const b = await build(t, { redis })
  const alice = await openStream(t, `${a.base}/notify`, auth('alice'))
  const carol = await openStream(t, `${b.base}/notify`, auth('carol'))
  t.equal(await a.publish({ recipient_ids: ['alice', 'carol'], type: 'plain' }), 2, 'both instances subscribed')
  t.equal((await alice.nextEvents(1))[0]?.event, 'plain')
  t.equal((await carol.nextEvents(1))[0]?.event, 'plain')
  t.equal(subscriptionsOf(a).received.classic, 1)
  t.equal(subscriptionsOf(b).received.classic, 1)
})

t.test("a user's channel comes with their first stream and goes after their last", async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const s = await build(t, { redis })
  t.same(await shardSubscribers(admin, ['dave']), [0])
  const first = await openStream(t, `${s.base}/notify`, auth('dave'))
  t.same(await shardSubscribers(admin, ['dave']), [1], 'subscribed before the head went out')
  const second = await openStream(t, `${s.base}/notify`, auth('dave'))
  t.same(await shardSubscribers(admin, ['dave']), [1], 'one subscription per user, not per stream')
  first.close()
  await hubSize(s.app.notifier.hub, 1)
  await channelsDrop(s, 1)
  t.same(await shardSubscribers(admin, ['dave']), [1], 'kept while a stream remains')
  second.close()
  await hubSize(s.app.notifier.hub, 0)
  await channelsDrop(s, 0)
  // SUNSUBSCRIBE went out on the same connection as the PUBSUB answer below? No:
  // another connection; wait for Redis to have processed it.
  for (let i = 0; i < 100 && (await shardSubscribers(admin, ['dave']))[0] !== 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.same(await shardSubscribers(admin, ['dave']), [0], 'unsubscribed after the last stream')

  // And back: a new stream subscribes again, and gets its events.
  const again = await openStream(t, `${s.base}/notify`, auth('dave'))
  await s.store({ recipient_id: 'dave', type: 'back' })
  t.equal((await again.nextEvents(1))[0]?.event, 'back')
})

t.test('a stream that leaves while its subscription is on its way leaves no channel behind', async (t) => {
  // Passes look only at users who came or went: one whose last stream closed
  // before Redis confirmed the channel must be looked at again once it is.
  const redis = await startRedis(t)
  const admin = redis.client()
  const proxy = await startHoldProxy(t, redis.port, ['notify-subscriber', 'notify-commands'])
  const s = await build(t, { redis, env: { REDIS_URL: proxy.url, REDIS_COMMAND_TIMEOUT_MS: '60000' } })
  proxy.hold('notify-subscriber')
  const ghost = connect(Number(new URL(s.base).port), '127.0.0.1')
  t.teardown(() => ghost.destroy())
  await once(ghost, 'connect')
  ghost.write('GET /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-ghost\r\n\r\n')
  await proxy.somethingHeld() // ghost's SSUBSCRIBE, sent, not heard yet
  ghost.destroy()
  await hubSize(s.app.notifier.hub, 0)
  proxy.release()
  // zed's channel is confirmed in the same pass as ghost's goes, or a later one.
  await openStream(t, `${s.base}/notify`, auth('zed'))
  t.equal(subscriptionsOf(s).channels, 1, "zed's channel only")
  for (let i = 0; i < 500 && (await shardSubscribers(admin, ['ghost']))[0] !== 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.same(await shardSubscribers(admin, ['ghost', 'zed']), [0, 1], 'Redis agrees')
})

t.test('a connect storm is subscribed in a few batched commands, not one per connect', async (t) => {
  // Connects that arrive while a subscribing round trip is on its way are
  // batched into the next one. The proxy stretches that round trip (a slow
  // network) so that the whole storm arrives during it, whatever the machine's speed.
  const redis = await startRedis(t)
  const admin = redis.client()
  const proxy = await startHoldProxy(t, redis.port, ['notify-subscriber', 'notify-commands'])
  const s = await build(t, { redis, env: { REDIS_URL: proxy.url, REDIS_COMMAND_TIMEOUT_MS: '60000' } })
  const calls = async () => Number(/cmdstat_ssubscribe:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0)
  const before = await calls()
  const N = 400
  proxy.hold('notify-subscriber')
  const opening = Array.from({ length: N }, (_, i) => openStream(t, `${s.base}/notify`, auth(`storm${i}`)))
  await hubSize(s.app.notifier.hub, N) // every stream registered, waiting for its subscription
  proxy.release()
  const streams = await Promise.all(opening)
  t.equal(streams.filter((st) => st.status === 200).length, N, `${N} streams open`)
  t.equal(subscriptionsOf(s).channels, N, `${N} user channels`)
  const commands = (await calls()) - before
  t.ok(commands <= 3, `${N} users subscribed with ${commands} SSUBSCRIBE commands`)
})

t.test("a stream's channel is confirmed before its place in history is read", async (t) => {
  // The subscriber connection goes through a proxy that can hold it up: the
  // SSUBSCRIBE of a joining stream is sent but not yet heard by Redis while an
  // event is published. Subscribing first, the stream reads its history only
  // once Redis has it subscribed, and finds the event there. Reading first, it
  // would have read before the event and subscribed after it: the event would
  // be in neither.
  const redis = await startRedis(t)
  const proxy = await startHoldProxy(t, redis.port, ['notify-subscriber', 'notify-commands'])
  const s = await build(t, { redis, env: { REDIS_URL: proxy.url } })
  const [seen] = await s.store({ recipient_id: 'ivy', type: 'n', n: 0 })

  proxy.hold('notify-subscriber')
  const joining = openStream(t, `${s.base}/notify`, { ...auth('ivy'), 'last-event-id': seen?.id as string })
  await proxy.somethingHeld() // ivy's SSUBSCRIBE, on its way but not arrived
  const [gap] = await s.store({ recipient_id: 'ivy', type: 'n', n: 1 })
  proxy.release()
  const ivy = await joining
  const [after] = await s.store({ recipient_id: 'ivy', type: 'n', n: 2 })
  t.same((await ivy.nextEvents(2)).map((e) => e.id), [gap?.id, after?.id], 'the event published in the gap, then live')
})

t.test('streams joining with Last-Event-ID while their user is published to: each event exactly once', async (t) => {
  const redis = await startRedis(t)
  const a = await build(t, { redis })
  const b = await build(t, { redis })
  const users = Array.from({ length: 20 }, (_, i) => `u${i}`)
  // Each user has one stored event; streams resume from it.
  const first = await b.store(users.map((u) => ({ recipient_id: u, type: 'n', n: 0 })))
  let stop = false
  const sent = new Map<string, number[]>(users.map((u) => [u, []]))
  const publishing = (async () => {
    for (let n = 1; !stop; n++) {
      const user = users[n % users.length] as string
      await b.store({ recipient_id: user, type: 'n', n })
      sent.get(user)?.push(n)
    }
  })()
  // Joins spread over the publishing; each after a few more events.
  const streams: [string, TestStream][] = []
  for (const [i, user] of users.entries()) {
    const id = first[i]?.id as string
    streams.push([user, await openStream(t, `${a.base}/notify`, { ...auth(user), 'last-event-id': id })])
  }
  stop = true
  await publishing
  for (const [user, stream] of streams) {
    const ns = sent.get(user) as number[]
    const end = await a.store({ recipient_id: user, type: 'end' })
    const events = await stream.nextEvents(ns.length + 1)
    t.equal(events.at(-1)?.id, end[0]?.id, `${user}: the end marker last`)
    t.same(events.slice(0, -1).map((e) => JSON.parse(e.data).n), ns, `${user}: ${ns.length} events, each once, in order`)
  }
})

t.test('an instance closing drops its subscriptions with its connection', async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const s = await build(t, { redis })
  await openStream(t, `${s.base}/notify`, auth('henry'))
  t.same(await shardSubscribers(admin, ['henry']), [1])
  await s.app.close()
  t.same(await shardSubscribers(admin, ['henry']), [0])
})
