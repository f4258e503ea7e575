// The topology helpers work: a real 3+3 Redis Cluster forms, fails over
// (manually and by a killed master), moves slots (MOVED, ASK); a master with a
// replica and three sentinels fails over and the ioredis sentinel client follows.
import t from 'tap'
import { Redis } from 'ioredis'
import { startCluster } from './helpers/cluster.js'
import { startSentinel } from './helpers/sentinel.js'

const since = (start: number) => `${((Date.now() - start) / 1000).toFixed(1)} s`

t.test('cluster: forms, fails over, moves slots', async (t) => {
  let start = Date.now()
  const cluster = await startCluster(t)
  t.comment(`formed in ${since(start)}`)
  t.equal(cluster.nodes.filter((n) => n.role === 'master').length, 3, '3 masters')
  t.equal(cluster.nodes.filter((n) => n.role === 'replica').length, 3, '3 replicas')
  t.match(cluster.seeds, /^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){5}$/)

  const client = cluster.client()
  const key = 'notifications:history:{alice}'
  await client.set(key, 'v1')
  t.equal(await client.get(key), 'v1', 'a key written through the cluster client reads back')
  const slot = cluster.slotOf(key)
  t.equal(slot, cluster.slotOf('{alice}'), 'the hash tag decides the slot')

  // Manual failover: the replica takes the slot over, the old master becomes its replica.
  const first = await cluster.masterOf(slot)
  const replica = await cluster.replicaOf(first)
  start = Date.now()
  await cluster.manualFailover(replica)
  t.comment(`manual failover in ${since(start)}`)
  t.equal(await cluster.masterOf(slot), replica, 'the promoted replica serves the slot')
  t.equal(await cluster.replicaOf(replica), first, 'the old master replicates it')
  t.equal(await client.get(key), 'v1', 'the client follows (MOVED)')

  // Forced failover: SIGKILL the master; its replica is elected.
  start = Date.now()
  const promoted = await cluster.killMaster(replica)
  t.comment(`forced failover (killMaster) in ${since(start)}`)
  t.equal(promoted, first, 'the only replica was promoted')
  t.equal(await cluster.masterOf(slot), first)
  t.equal(cluster.nodes.find((n) => n.port === replica)?.role, 'dead')
  t.equal(await client.get(key), 'v1', 'the data survived on the replica')
  start = Date.now()
  await cluster.restartNode(replica)
  t.comment(`killed node back as a replica in ${since(start)}`)
  t.equal(await cluster.replicaOf(first), replica)

  // A completed migration: the old owner answers MOVED, the cluster client follows.
  const to = cluster.nodes.find((n) => n.role === 'master' && n.port !== first)?.port ?? 0
  start = Date.now()
  await cluster.migrateSlot(slot, to)
  t.comment(`slot migrated in ${since(start)}`)
  t.equal(await cluster.masterOf(slot), to)
  const old = new Redis({ host: '127.0.0.1', port: first, lazyConnect: true })
  t.teardown(() => old.disconnect())
  await t.rejects(old.get(key), new RegExp(`^MOVED ${slot} 127\\.0\\.0\\.1:${to}$`), 'the old owner answers MOVED')
  t.equal(await client.get(key), 'v1', 'the cluster client follows MOVED')

  // A half-done migration: a moved key answers ASK from the source, a key not yet moved is still served there.
  await client.set('{alice}:second', 'here')
  const half = await cluster.beginMigration(slot, first, { keys: 1 })
  const source = cluster.node(to)
  const answers = await Promise.all([key, '{alice}:second'].map((k) => source.get(k).catch((err: Error) => err.message)))
  t.same(answers.filter((a) => a === 'v1' || a === 'here').length, 1, `one key still served by the source (${answers})`)
  t.match(answers.find((a) => a?.startsWith('ASK')), new RegExp(`^ASK ${slot} 127\\.0\\.0\\.1:${first}$`), 'the moved one: ASK')
  t.same(await Promise.all([client.get(key), client.get('{alice}:second')]), ['v1', 'here'], 'the cluster client follows ASK')
  await half.finish()
  t.equal(await cluster.masterOf(slot), first, 'finished: the slot is on the destination')
  t.same(await Promise.all([client.get(key), client.get('{alice}:second')]), ['v1', 'here'])

  // A hung master (SIGSTOP, sockets open): its replica takes over after cluster-node-timeout;
  // resumed, it rejoins as a replica. (Asked of the nodes directly: an ioredis client without
  // slotsRefreshInterval and commandTimeout would wait on the hung node for ever.)
  const hung = await cluster.masterOf(slot)
  cluster.pause(hung)
  start = Date.now()
  const taken = await cluster.waitForFailover(hung, slot)
  t.comment(`hung master replaced in ${since(start)}`)
  t.not(taken, hung)
  t.equal(await cluster.node(taken).get(key), 'v1', 'the new master serves the slot')
  start = Date.now()
  await cluster.resume(hung)
  t.comment(`resumed node rejoined in ${since(start)}`)
  t.equal(cluster.nodes.find((n) => n.port === hung)?.role, 'replica', 'the resumed node is a replica now')
})

t.test('sentinel: fails over, the client follows', async (t) => {
  let start = Date.now()
  const s = await startSentinel(t, { password: 'secret' })
  t.comment(`sentinel setup in ${since(start)}`)
  t.match(s.seeds, /^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}$/)
  const client = s.client()
  await client.set('k', 'v')
  const before = await s.master()
  start = Date.now()
  const after = await s.killMaster()
  t.comment(`sentinel failover in ${since(start)}`)
  t.not(after, before, 'a new master')
  t.equal(await s.master(), after)
  t.equal(await client.get('k'), 'v', 'the client follows the new master')
  t.same(await client.config('GET', 'port'), ['port', String(after)], 'connected to the new master')
  start = Date.now()
  await s.restartOld()
  t.comment(`old master back as a replica in ${since(start)}`)
  t.equal(await s.master(), after, 'the master stays')
})
