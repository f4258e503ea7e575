// Two instances on a real Redis Cluster (3 masters, 3 replicas): every event
// reaches every stream of its recipient exactly once and in order, whichever
// instance holds the stream and whichever way it was published (/publish on
// either instance, the script from a plain Cluster client, createPublisher on
// a Cluster client, a plain PUBLISH); nobody else gets it; an instance takes
// off Redis only its own users' events; a stream that moves to the other
// instance with Last-Event-ID gets what it missed.
import type { Cluster } from 'ioredis'
import t from 'tap'
import { PUBLISH_SCRIPT } from '../src/broker/publish-script.js'
import type { RedisBroker } from '../src/broker/redis-broker.js'
import { createPublisher } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { openStream, type TestStream } from './helpers/sse.js'

const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })
const subscriptionsOf = (s: Built) => (s.app.notifier.broker as RedisBroker).subscriptions

/** Users whose slots are served by each of the three masters (two per master). */
async function usersOnEveryMaster(cluster: TestCluster): Promise<string[]> {
  const byMaster = new Map<number, string[]>()
  for (let i = 0; byMaster.size < 3 || [...byMaster.values()].some((l) => l.length < 2); i++) {
    const user = `c${i}`
    const master = await cluster.masterOf(`notifications:history:{${user}}`)
    const list = byMaster.get(master) ?? []
    if (list.length < 2) list.push(user)
    byMaster.set(master, list)
  }
  return [...byMaster.values()].flat()
}

const instance = (t: Parameters<typeof build>[0], cluster: TestCluster, client: Cluster) =>
  build(t, {
    topology: { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (channel, message) => client.publish(channel, message) },
    env: { PUBLISH_TOKEN: 'publish-token-0123456789abcdef' },
  })

/**
 * Publishes `end` to `user` and resolves with the `n`s the stream got before
 * it, from event `from` on (earlier `end`s, sent for another tab, left out).
 */
async function untilEnd(s: Built, stream: TestStream, user: string, from: number): Promise<unknown[]> {
  const [end] = await s.store({ recipient_id: user, type: 'end' })
  for (let n = from + 1; ; n++) {
    const events = await stream.nextEvents(n)
    if (events.at(-1)?.id === end?.id) return events.slice(from, -1).filter((e) => e.event !== 'end').map((e) => JSON.parse(e.data).n)
  }
}

t.test('two instances on a Cluster: exactly once, in order, every publish path, nobody else', async (t) => {
  const cluster = await startCluster(t)
  const client = cluster.client()
  const a = await instance(t, cluster, client)
  const b = await instance(t, cluster, client)
  const users = await usersOnEveryMaster(cluster)
  // Each user one stream on A or B; the first user a second tab on the other instance.
  const streams: [string, Built, TestStream][] = []
  for (const [i, user] of users.entries()) {
    const s = i % 2 === 0 ? a : b
    streams.push([user, s, await openStream(t, `${s.base}/notify`, auth(user))])
  }
  const first = users[0] as string
  streams.push([first, b, await openStream(t, `${b.base}/notify`, auth(first))])

  const viaScript = async (user: string, n: number) => {
    const data = JSON.stringify({ recipient_id: user, type: 'n', n })
    await client.eval(PUBLISH_SCRIPT, 1, `notifications:history:{${user}}`, 'notifications', user, 'n', data, 100, 86400, 'shard', '', 600)
  }
  const publisher = createPublisher({ redis: client })
  const paths: [string, (user: string, n: number) => Promise<unknown>][] = [
    ['A /publish', (user, n) => a.store({ recipient_id: user, type: 'n', n })],
    ['B /publish', (user, n) => b.store({ recipient_id: user, type: 'n', n })],
    ['the script', viaScript],
    ['createPublisher', (user, n) => publisher.publish({ recipient_id: user, type: 'n', n })],
  ]
  const sent = new Map<string, number[]>(users.map((u) => [u, []]))
  let n = 0
  for (let round = 0; round < 3; round++) {
    for (const [, path] of paths) {
      for (const user of users) {
        n++
        await path(user, n)
        sent.get(user)?.push(n)
      }
    }
  }
  // A batch across every master in one call.
  const batch = users.map((user) => ({ recipient_id: user, type: 'n', n: ++n }))
  for (const e of batch) sent.get(e.recipient_id)?.push(e.n)
  await a.store(batch)
  for (const [user, s, stream] of streams) {
    t.same(await untilEnd(s, stream, user, 0), sent.get(user), `${user} on ${s === a ? 'A' : 'B'}: all ${sent.get(user)?.length}, once, in order`)
  }
  // A plain PUBLISH: live, on the classic channel, reaches both instances. (It
  // comes on another connection than users' own channels: no order with them.)
  await a.publish({ recipient_ids: users, type: 'plain' })
  for (const [user, s, stream] of streams) {
    for (let k = 1; !stream.events.some((e) => e.event === 'plain'); k++) await stream.nextEvents(k)
    t.equal(stream.events.filter((e) => e.event === 'plain').length, 1, `${user} on ${s === a ? 'A' : 'B'}: the plain event, once`)
  }
  const aUsers = users.filter((_, i) => i % 2 === 0)
  t.equal(subscriptionsOf(a).channels, aUsers.length, 'A subscribed its users only')
  t.equal(subscriptionsOf(b).channels, users.length - aUsers.length + 1, 'B its users and the second tab')
})

t.test('routing on a Cluster: an instance does not pay for the other one\'s users', async (t) => {
  const cluster = await startCluster(t)
  const client = cluster.client()
  const a = await instance(t, cluster, client)
  const b = await instance(t, cluster, client)
  const users = await usersOnEveryMaster(cluster)
  const streams = await Promise.all(users.map((u) => openStream(t, `${a.base}/notify`, auth(u))))
  const before = { ...subscriptionsOf(b).received }
  const N = 60
  for (let i = 0; i < N; i++) await b.store({ recipient_id: users[i % users.length] as string, type: 'n', n: i })
  for (const [i, user] of users.entries()) {
    const got = await untilEnd(a, streams[i] as TestStream, user, 0)
    t.equal(got.length, N / users.length, `${user}: its ${N / users.length}`)
  }
  t.same(subscriptionsOf(b).received, before, 'B took none of them off Redis, on any channel')
  t.equal(subscriptionsOf(b).channels, 0)
  t.ok(subscriptionsOf(a).received.user >= N, 'A took them')
  t.equal(subscriptionsOf(a).links, 3, 'A holds one subscriber connection per master')
})

t.test('a stream that moves to the other instance with Last-Event-ID gets what it missed', async (t) => {
  const cluster = await startCluster(t)
  const client = cluster.client()
  const a = await instance(t, cluster, client)
  const b = await instance(t, cluster, client)
  const [user] = await usersOnEveryMaster(cluster)
  const u = user as string
  const onA = await openStream(t, `${a.base}/notify`, auth(u))
  await a.store({ recipient_id: u, type: 'n', n: 1 })
  const [seen] = await onA.nextEvents(1)
  onA.close()
  await b.store([1, 2, 3].map((k) => ({ recipient_id: u, type: 'n', n: 1 + k })))
  const onB = await openStream(t, `${b.base}/notify`, { ...auth(u), 'last-event-id': seen?.id as string })
  t.same(await untilEnd(b, onB, u, 0), [2, 3, 4], 'the three it missed, then live')
})

t.test('bad input on a Cluster: dropped and counted, on the classic channel and on a user channel', async (t) => {
  const cluster = await startCluster(t)
  const client = cluster.client()
  // Every plain PUBLISH through one node: a Cluster client sends each to a
  // node of its choosing, and messages entering through different nodes reach
  // the subscribed node by different paths, in no set order.
  const entry = cluster.node(await cluster.masterOf(0))
  // Live-only messages are what this counts: no subscription may be lost (and
  // caught up from history, which has none of them) to a ping slowed by a busy machine.
  const a = await build(t, {
    topology: { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (channel, message) => entry.publish(channel, message) },
    env: { REDIS_COMMAND_TIMEOUT_MS: '20000' },
  })
  const [user] = await usersOnEveryMaster(cluster)
  const u = user as string
  const stream = await openStream(t, `${a.base}/notify`, auth(u))
  await a.publish('not json')
  await a.publish({ recipient_id: u, type: 'bad type' })
  // Garbage straight onto the user's own channel, as a broken publisher might send it.
  await client.spublish(`notifications:{${u}}`, '\x1e1-1.deadbeef\nn\n"')
  await client.spublish(`notifications:{${u}}`, '{"recipient_id":"someone-else"}')
  const [good] = await a.store({ recipient_id: u, type: 'good' })
  // The classic channel may be read on another connection than the user's:
  // a plain event after the bad ones, on the classic channel, is in order with them.
  await a.publish({ recipient_id: u, type: 'plain-after' })
  const events = await stream.nextEvents(2)
  t.same(events.map((e) => e.event).sort(), ['good', 'plain-after'], 'the valid events are delivered, nothing else')
  t.equal(events.find((e) => e.event === 'good')?.id, good?.id)
  const dropped = a.app.notifier.ingest.stats.dropped
  t.equal(dropped.not_json, 1)
  t.equal(dropped.bad_type, 1)
  t.equal(dropped.bad_envelope, 1)
  t.equal(stream.events.length, 2, "another user's event on this user's channel went to that user (who has no stream here), not to this one")
})
