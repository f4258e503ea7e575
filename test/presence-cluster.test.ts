// Presence on a real Redis Cluster (3 masters, 3 replicas), two instances: a
// user's channel lives on the master of its slot, and PUBSUB answers from the
// node asked only, so each user is asked of that master, one command per
// master for a whole batch; the answers are the same whichever instance is
// asked, as streams open and close on either; /publish counts the instances
// that got an event live.
import t, { type Test } from 'tap'
import { liveChannel } from '../src/broker/keys.js'
import { type Built, build } from './helpers/app.js'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { closed, getPresence, PRESENCE_TOKEN, presenceOf } from './helpers/presence.js'
import { openStream } from './helpers/sse.js'

const cluster: TestCluster = await startCluster(t)
const client = cluster.client()
const instance = () =>
  build(t, {
    topology: { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (channel, message) => client.publish(channel, message) },
    env: { PUBLISH_TOKEN: PRESENCE_TOKEN },
  })
const a: Built = await instance()
const b: Built = await instance()
const listen = (s: Built, user: string) => openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${user}` })

/** Three users per master; each user's master port. */
const masterOf = new Map<string, number>()
for (let i = 0; [...new Set(masterOf.values())].length < 3 || masterOf.size < 9; i++) {
  const user = `p${i}`
  const port = await cluster.masterOf(liveChannel('notifications', user))
  if ([...masterOf.values()].filter((p) => p === port).length < 3) masterOf.set(user, port)
}
const users = [...masterOf.keys()]
const masters = [...new Set(masterOf.values())]

/** PUBSUB SHARDNUMSUB commands each master has run so far. */
async function shardNumSubCalls(): Promise<number[]> {
  return Promise.all(
    masters.map(async (port) => Number(/cmdstat_pubsub\|shardnumsub:calls=(\d+)/.exec(await cluster.node(port).info('commandstats'))?.[1] ?? 0)),
  )
}

const expected = (online: Record<string, number>) => Object.fromEntries(users.map((u) => [u, online[u] ?? 0]))

async function both(t: Test): Promise<Record<string, number | null>> {
  const [fromA, fromB] = await Promise.all([presenceOf(a, users), presenceOf(b, users)])
  t.same(fromB, fromA, 'A and B give the same answer')
  return fromA
}

t.test('a batch asks each master once, about the users of its slots', async (t) => {
  const before = await shardNumSubCalls()
  t.same(await presenceOf(a, users), expected({}), 'nobody online')
  const after = await shardNumSubCalls()
  t.same(after.map((n, i) => n - (before[i] as number)), [1, 1, 1], `${users.length} users on 3 masters: one command each`)
})

t.test('online and offline on every master, as streams open and close on either instance', async (t) => {
  // One user per master on A, one per master on B, and one of them on both.
  const [u0, u1, u2, u3, u4, u5] = [0, 1, 2].flatMap((m) => users.filter((u) => masterOf.get(u) === masters[m]).slice(0, 2)) as string[]
  const onA = await Promise.all([u0, u2, u4].map((u) => listen(a, u as string)))
  const onB = await Promise.all([u1, u3, u5, u0].map((u) => listen(b, u as string)))
  const open = { [u0 as string]: 2, [u1 as string]: 1, [u2 as string]: 1, [u3 as string]: 1, [u4 as string]: 1, [u5 as string]: 1 }
  t.same(await both(t), expected(open), 'each user online with the instances holding them')
  t.same((await getPresence(b, u0 as string)).json, { user_id: u0, online: true, instances: 2 }, 'GET /presence/<user>')

  const res = await fetch(`${a.base}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PRESENCE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ recipient_ids: users, type: 'n' }),
  })
  const published = ((await res.json()) as { published: { recipient_id: string; live: boolean; instances: number }[] }).published
  t.same(
    Object.fromEntries(published.map((p) => [p.recipient_id, p.instances])),
    expected(open),
    '/publish: each recipient delivered live to the instances holding them',
  )
  t.ok(published.every((p) => p.live === p.instances > 0))

  // u0 leaves A (still on B), u1 leaves B (gone).
  onA[0]?.close()
  await closed(a, cluster.node(masterOf.get(u0 as string) as number), u0 as string, { streams: 2, channels: 2, subscribers: 1 })
  onB[0]?.close()
  await closed(b, cluster.node(masterOf.get(u1 as string) as number), u1 as string, { streams: 3, channels: 3, subscribers: 0 })
  t.same(await both(t), expected({ ...open, [u0 as string]: 1, [u1 as string]: 0 }), 'after the closes, from both instances')
})
