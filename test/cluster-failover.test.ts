// Failovers and slot moves on a real Redis Cluster (3 masters, 3 replicas),
// with two instances (A and B) holding streams for users on every master, and
// a steady publish loop running through both: per stream, received = the
// acknowledged events (exactly once, in order), or a `resync` was sent. Only a
// forced failover may lose acknowledged writes (replication is async; one test
// makes it certain): the streams that had them get `resync`, never a silent
// gap. Subscriptions follow their slots (counted on the node that serves each
// channel now; a slot moved half-way sends publishes to the destination with
// ASK, one that has not run the script yet), and no stream stays deaf afterwards.
import t, { type Test } from 'tap'
import { type Built, build } from './helpers/app.js'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import {
  auth, brokerTimeline, historyOf, longestGap, loopEventAfter, PublishLoop, summary, untilEvent, usersByMaster, verdict, viaStore, type Watched, watch,
} from './helpers/cluster-load.js'
import { waitFor } from './helpers/wait.js'

/** Enough history for the whole run: a catch-up never resyncs for want of it. */
const ENV = { HISTORY_SIZE: '2000' }
/** Deadline for a stream to hear again after a fault: generous, it is about "not deaf", not speed. */
const RECOVERY_MS = 30_000

const historyKey = (user: string) => `notifications:history:{${user}}`
const channelOf = (user: string) => `notifications:{${user}}`

interface Scene {
  cluster: TestCluster
  a: Built
  b: Built
  byMaster: Map<number, string[]>
  users: string[]
  watched: Watched[]
}

async function scene(t: Test): Promise<Scene> {
  const cluster = await startCluster(t)
  const client = cluster.client()
  const instance = () =>
    build(t, { topology: { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (ch, m) => client.publish(ch, m) }, env: ENV })
  const a = await instance()
  const b = await instance()
  const byMaster = await usersByMaster(cluster)
  const users = [...byMaster.values()].flat()
  const watched: Watched[] = []
  for (const user of users) {
    for (const [on, s] of [['A', a], ['B', b]] as const) watched.push(await watch(t, user, on, `${s.base}/notify`, auth(user)))
  }
  return { cluster, a, b, byMaster, users, watched }
}

/** Every stream has an event of the loop published after `marks` (taken once the fault is over). */
async function allHearAgain(s: Scene, loop: PublishLoop, what: string): Promise<void> {
  const marks = new Map(s.users.map((u) => [u, loop.last(u)]))
  await Promise.all(s.watched.map((w) => untilEvent(w, loopEventAfter(marks.get(w.user) ?? 0), RECOVERY_MS, `event published ${what}`)))
}

/**
 * Each user's channel has exactly A's and B's subscription on the master that
 * serves it now, and no node that serves no slot of theirs holds one.
 */
async function subscriptionsFollow(t: Test, s: Scene, users: string[], what: string): Promise<void> {
  await waitFor(
    async (reason) => {
      for (const user of users) {
        const master = await s.cluster.masterOf(historyKey(user))
        const [, count] = (await s.cluster.node(master).call('PUBSUB', 'SHARDNUMSUB', channelOf(user))) as [string, number]
        reason(`${user}: ${count} subscriber(s) on ${master}`)
        if (count !== 2) return false
        for (const n of s.cluster.nodes) {
          if (n.role === 'dead' || n.port === master || n.paused) continue
          const channels = (await s.cluster.node(n.port).call('PUBSUB', 'SHARDCHANNELS')) as string[]
          reason(`${user}: still subscribed on ${n.port}`)
          if (channels.includes(channelOf(user))) return false
        }
      }
      return true
    },
    { timeoutMs: 10_000, what: `A's and B's subscriptions on the masters serving ${users.join(', ')} ${what}` },
  )
  t.pass(`subscriptions followed the slots of ${users.join(', ')} ${what}`)
}

/**
 * Stops the loop, then one more event per user (`end`) must reach every stream
 * (none stays deaf); then the verdict per stream. Resolves to the acknowledged
 * events missing from the history (lost writes), per user.
 */
async function conclude(t: Test, s: Scene, loop: PublishLoop, allowResync: boolean): Promise<Map<string, number[]>> {
  await loop.stop()
  const ends = new Map<string, string>()
  for (const user of s.users) ends.set(user, await loop.publish({ recipient_id: user, type: 'end' }, 'end'))
  await Promise.all(s.watched.map((w) => untilEvent(w, (e) => e.id === ends.get(w.user), RECOVERY_MS, 'final `end` event')))
  t.pass('no stream stays deaf: one more event per user reached all of its streams')
  const client = s.cluster.client()
  const lost = new Map<string, number[]>()
  for (const user of s.users) {
    const history = await historyOf(client, user)
    const stored = new Set(history)
    const acked = loop.acked.get(user) ?? []
    lost.set(user, acked.filter((n) => !stored.has(n)))
    for (const w of s.watched.filter((x) => x.user === user)) {
      verdict(t, w, acked, loop.uncertain.get(user) ?? new Set(), history, { allowResync })
    }
  }
  const acked = [...loop.acked.values()].reduce((n, l) => n + l.length, 0)
  const reconnected = s.watched.filter((w) => w.reconnects > 0).map((w) => `${w.user}@${w.on}`)
  t.comment(`${acked} events acknowledged; failed attempts: ${JSON.stringify(Object.fromEntries(loop.failures))}; streams sent away with retry: [${reconnected}]`)
  return lost
}

t.test('manual failover (CLUSTER FAILOVER) under a publish loop: everything acknowledged, exactly once, in order, no resync', async (t) => {
  const s = await scene(t)
  const loop = new PublishLoop(t, { via: [viaStore(s.a), viaStore(s.b)], users: s.users, idempotent: true }).start()
  await Promise.all(s.watched.map((w) => untilEvent(w, (e) => e.event === 'n', RECOVERY_MS, 'a first event')))

  const [master, moved] = [...s.byMaster][0] as [number, string[]]
  const replica = await s.cluster.replicaOf(master)
  const started = performance.now()
  await s.cluster.manualFailover(replica)
  t.comment(`CLUSTER FAILOVER of ${master} to ${replica}: cluster agreed in ${(performance.now() - started).toFixed(0)} ms`)
  t.equal(await s.cluster.masterOf(historyKey(moved[0] as string)), replica, 'the replica serves the slots now')
  await allHearAgain(s, loop, 'after the failover')
  await subscriptionsFollow(t, s, moved, 'after the manual failover')
  t.comment(`longest silence per stream since the failover began: ${summary(s.watched.map((w) => longestGap(w, started)))}`)

  const lost = await conclude(t, s, loop, false)
  t.same([...lost.values()].flat(), [], 'a manual failover loses nothing acknowledged')
})

t.test('forced failover (master killed) under a publish loop: everything acknowledged exactly once, or a resync; never a silent gap', async (t) => {
  const s = await scene(t)
  const times = { A: brokerTimeline(s.a), B: brokerTimeline(s.b) }
  const loop = new PublishLoop(t, { via: [viaStore(s.a), viaStore(s.b)], users: s.users, idempotent: true }).start()
  await Promise.all(s.watched.map((w) => untilEvent(w, (e) => e.event === 'n', RECOVERY_MS, 'a first event')))

  const [victim, moved] = [...s.byMaster][0] as [number, string[]]
  const killed = performance.now()
  const promoted = await s.cluster.killMaster(victim)
  t.comment(`master ${victim} killed: ${promoted} promoted, cluster agreed in ${(performance.now() - killed).toFixed(0)} ms`)
  await allHearAgain(s, loop, 'after the failover')
  const heard = performance.now()
  await subscriptionsFollow(t, s, moved, 'after the forced failover')

  // How long streams went without events (the loop publishes to each user every ~25 ms).
  const gaps = (ws: Watched[]) => summary(ws.map((w) => longestGap(w, killed)))
  t.comment(`longest silence, streams of the killed master's users: ${gaps(s.watched.filter((w) => moved.includes(w.user)))}`)
  t.comment(`longest silence, streams of the other users: ${gaps(s.watched.filter((w) => !moved.includes(w.user)))}`)
  for (const [name, tl] of Object.entries(times)) {
    const down = tl.down.find((d) => d >= killed)
    const up = tl.up.find((u) => down !== undefined && u >= down)
    t.comment(`${name}: broker down ${down === undefined ? 'never' : `${(down - killed).toFixed(0)} ms after the kill`}, up again ${up === undefined || down === undefined ? '-' : `${(up - down).toFixed(0)} ms later`}`)
  }
  t.comment(`every stream heard again ${(heard - killed).toFixed(0)} ms after the kill`)

  const lost = await conclude(t, s, loop, true)
  const resyncs = s.watched.filter((w) => w.events.some((e) => e.event === 'resync')).map((w) => `${w.user}@${w.on}`)
  t.comment(`acknowledged writes lost by the failover: ${JSON.stringify(Object.fromEntries([...lost].filter(([, l]) => l.length > 0)))}; streams resynced: [${resyncs}]`)
  t.same(
    [...lost].filter(([user, l]) => l.length > 0 && !moved.includes(user)).map(([user]) => user),
    [],
    'users on the surviving masters lost nothing',
  )
})

t.test('forced failover that loses acknowledged writes: the streams that had them get a resync, the others everything', async (t) => {
  const s = await scene(t)
  const loop = new PublishLoop(t, { via: [viaStore(s.a), viaStore(s.b)], users: s.users, idempotent: true }).start()
  await Promise.all(s.watched.map((w) => untilEvent(w, (e) => e.event === 'n', RECOVERY_MS, 'a first event')))

  // Cut the replica off its master (a password the master does not have: it
  // cannot resync), so that what the master acknowledges from now on is lost
  // when the replica takes over: async replication at its worst, made certain.
  const [victim, moved] = [...s.byMaster][0] as [number, string[]]
  const replica = s.cluster.node(await s.cluster.replicaOf(victim))
  await replica.config('SET', 'masterauth', 'not-the-password')
  await replica.call('CLIENT', 'KILL', 'TYPE', 'master')
  await waitFor(async () => /master_link_status:down/.test(await replica.info('replication')), { timeoutMs: 10_000, what: 'the replica cut off' })
  // Events the streams get live from the master, which the replica never sees.
  const marks = new Map(moved.map((u) => [u, loop.last(u) + 5]))
  await Promise.all(
    s.watched.filter((w) => moved.includes(w.user)).map((w) => untilEvent(w, loopEventAfter(marks.get(w.user) ?? 0), RECOVERY_MS, 'events the replica never got')),
  )
  const killed = performance.now()
  await s.cluster.killMaster(victim)
  await allHearAgain(s, loop, 'after the failover')
  t.comment(`every stream heard again ${(performance.now() - killed).toFixed(0)} ms after the kill`)

  const lost = await conclude(t, s, loop, true)
  t.comment(`acknowledged events lost: ${moved.map((u) => `${u}: ${lost.get(u)?.length}`).join(', ')}`)
  for (const user of moved) t.ok((lost.get(user)?.length ?? 0) > 0, `${user}: the failover lost acknowledged events (${lost.get(user)?.length})`)
  t.same([...lost].filter(([, l]) => l.length > 0).map(([user]) => user).sort(), [...moved].sort(), 'only the killed master\'s users lost any')
  for (const w of s.watched) {
    const resynced = w.events.some((e) => e.event === 'resync')
    t.equal(resynced, moved.includes(w.user), `${w.user} on ${w.on}: ${moved.includes(w.user) ? 'had lost events: resync' : 'lost nothing: no resync'}`)
  }
  // A browser that saw a lost event live comes back with its id, the history
  // having moved on since: resync, not the events after it as if nothing was missing.
  const [u] = moved as [string]
  const seenLost = s.watched.flatMap((w) => (w.user === u ? w.events : [])).filter((e) => e.event === 'n' && lost.get(u)?.includes(JSON.parse(e.data).n))
  const back = await watch(t, u, 'A (back)', `${s.a.base}/notify`, { ...auth(u), 'last-event-id': seenLost.at(-1)?.id as string })
  t.equal((await back.nextEvents(1))[0]?.event, 'resync', `${u} back with the id of a lost event, the history since moved on: resync first`)
})

t.test('slot moves under a publish loop (MOVED, then ASK half-way): subscriptions follow, everything once, in order', async (t) => {
  const s = await scene(t)
  // Without idempotency keys the script touches one key (the history), so a
  // half-moved slot answers it with ASK; a failed publish is then not retried.
  const loop = new PublishLoop(t, { via: [viaStore(s.a), viaStore(s.b)], users: s.users, idempotent: false }).start()
  await Promise.all(s.watched.map((w) => untilEvent(w, (e) => e.event === 'n', RECOVERY_MS, 'a first event')))
  const masters = [...s.byMaster.keys()]

  // A whole slot moved: the old owner answers MOVED; publishers and subscriptions follow.
  const [from, [user]] = [...s.byMaster][0] as [number, string[]]
  const u = user as string
  const slot = s.cluster.slotOf(historyKey(u))
  const to = masters[1] as number
  let started = performance.now()
  await s.cluster.migrateSlot(slot, to)
  t.comment(`slot ${slot} (${u}) moved from ${from} to ${to} in ${(performance.now() - started).toFixed(0)} ms`)
  await t.rejects(s.cluster.node(from).xlen(historyKey(u)), new RegExp(`^MOVED ${slot} `), 'the old owner answers MOVED')
  await allHearAgain(s, loop, 'after the move')
  await subscriptionsFollow(t, s, [u], 'after the move')
  t.comment(`${u}: longest silence since the move began: ${summary(s.watched.filter((w) => w.user === u).map((w) => longestGap(w, started)))}`)

  // Half-way: the history key is on the destination, the slot still on the source: ASK.
  const [vFrom, [vUser]] = [...s.byMaster][2] as [number, string[]]
  const v = vUser as string
  const vSlot = s.cluster.slotOf(historyKey(v))
  const keysInSlot = (await s.cluster.node(vFrom).cluster('COUNTKEYSINSLOT', vSlot)) as number
  t.equal(keysInSlot, 1, `slot ${vSlot} holds ${v}'s history only`)
  // A destination that has not run the publish script (a master just added, or
  // restarted): the ASKed call meets NOSCRIPT there. Its own users wait meanwhile
  // (their publishes would load the script there again).
  const vTo = masters[0] as number
  const quiet: string[] = []
  for (const user of s.users) if ((await s.cluster.masterOf(historyKey(user))) === vTo) quiet.push(user)
  const resume = await loop.hold(quiet)
  await s.cluster.node(vTo).script('FLUSH')
  const half = await s.cluster.beginMigration(vSlot, vTo, { keys: 1 })
  await t.rejects(s.cluster.node(vFrom).xlen(historyKey(v)), new RegExp(`^ASK ${vSlot} `), 'the source answers ASK for the moved history')
  const before = s.watched.filter((w) => w.user === v).map((w) => w.events.length)
  const ackedBefore = loop.acked.get(v)?.length ?? 0
  await waitFor((reason) => {
    reason(`failed attempts: ${JSON.stringify(Object.fromEntries(loop.failures))}`)
    return (loop.acked.get(v)?.length ?? 0) >= ackedBefore + 10
  }, { timeoutMs: 10_000, what: `10 events for ${v} acknowledged while its slot is half-moved` })
  const during = s.watched.filter((w) => w.user === v).map((w, i) => w.events.length - (before[i] ?? 0))
  t.comment(`${v}: events arriving live while half-moved (publishes ASKed to the destination): [${during}] per stream, for ${(loop.acked.get(v)?.length ?? 0) - ackedBefore} acknowledged`)
  resume()
  started = performance.now()
  await half.finish()
  t.comment(`half-way migration of slot ${vSlot} (${v}) finished in ${(performance.now() - started).toFixed(0)} ms`)
  await allHearAgain(s, loop, 'after the half-way move finished')
  await subscriptionsFollow(t, s, [v], 'after the half-way move')

  const lost = await conclude(t, s, loop, false)
  t.same([...lost.values()].flat(), [], 'a slot move loses nothing acknowledged')
})
