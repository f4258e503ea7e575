// The publish controls on a real Redis Cluster (3 masters, 3 replicas): the
// collapse index lives in the recipient's slot, so the script (called from a
// plain Cluster client with its documented arguments) and createPublisher
// (a batch across every master) replace and store atomically on whichever
// master serves the user; a stream that moves to the other instance with a
// replaced progress id gets the latest progress, without resync.
import t from 'tap'
import { collapseIndexKey, historyKey } from '../src/broker/keys.js'
import { PUBLISH_SCRIPT } from '../src/broker/publish-script.js'
import { createPublisher } from '../src/publisher.js'
import { build } from './helpers/app.js'
import { startCluster } from './helpers/cluster.js'
import { openStream } from './helpers/sse.js'

const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })

t.test('a Cluster: live and collapsing publishes on every master, resumed on the other instance', async (t) => {
  const cluster = await startCluster(t)
  const client = cluster.client()
  const topology = { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (channel: string, message: string) => client.publish(channel, message) }
  const a = await build(t, { topology })
  const b = await build(t, { topology })
  // One user per master.
  const users: string[] = []
  const masters = new Set<number>()
  for (let i = 0; users.length < 3; i++) {
    const master = await cluster.masterOf(historyKey('notifications', `p${i}`))
    if (!masters.has(master)) users.push(`p${i}`)
    masters.add(master)
  }
  t.same(
    users.map((u) => cluster.slotOf(collapseIndexKey('notifications', u))),
    users.map((u) => cluster.slotOf(historyKey('notifications', u))),
    "each user's collapse index is in the slot of their history",
  )

  const notify = createPublisher({ redis: client })
  // The collapse index is a key of the call only with a collapse key.
  const script = (user: string, p: number, storage = 'store', collapse = 'job') => {
    const keys = [historyKey('notifications', user), ...(collapse ? [collapseIndexKey('notifications', user)] : [])]
    return client.eval(
      PUBLISH_SCRIPT, keys.length, ...keys,
      'notifications', user, 'job.progress', JSON.stringify({ recipient_id: user, p }), 100, 86400, 'shard', '', 600, storage, collapse,
    ) as Promise<string | null>
  }

  const streams = await Promise.all(users.map((u) => openStream(t, `${a.base}/notify`, auth(u))))
  await a.store(users.map((u) => ({ recipient_id: u, type: 'n' })))
  const replacedIds = new Map<string, string>()
  const latest = new Map<string, string>()
  for (const user of users) {
    replacedIds.set(user, (await script(user, 10)) as string)
    t.equal(await script(user, 15, 'live', ''), null, `${user}: a live tick, no id`)
  }
  // A batch across every master: one pipeline per node.
  const batch = await notify.publish(users.map((u) => ({ recipient_id: u, type: 'job.progress', collapse_key: 'job', p: 20 })))
  for (const user of users) latest.set(user, (await script(user, 30)) as string)
  t.ok(batch.every((p) => p.id !== null))

  for (const [i, user] of users.entries()) {
    const entries = (await client.xrange(historyKey('notifications', user), '-', '+')) as [string, string[]][]
    t.same(entries.map(([, f]) => JSON.parse(f[3] as string).p ?? 'real'), ['real', 30], `${user}: the real event and the latest progress`)
    const stream = streams[i]
    const got = await stream?.nextEvents(5)
    t.same(got?.map((e) => JSON.parse(e.data).p ?? 'real'), ['real', 10, 15, 20, 30], `${user}: every step live, in order`)

    const back = await openStream(t, `${b.base}/notify`, { ...auth(user), 'last-event-id': replacedIds.get(user) as string })
    const [first] = await back.nextEvents(1)
    t.equal(first?.id, latest.get(user), `${user} on the other instance, from a replaced id: the latest progress, no resync`)
  }
})
