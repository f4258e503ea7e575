// A Cluster master that hangs (SIGSTOP: sockets open, nothing answered) under
// a publish loop over HTTP, with two instances holding streams for users on
// every master: every /publish to its users answers 503 with Retry-After
// within the bound, a new stream for them gets `retry:` and ends within it,
// /readyz says 503; publishing to users on the other masters goes on; once the
// cluster has failed the node over the service recovers by itself (no
// restart, the node still hung), and after the node resumes every open stream
// has every acknowledged event in order (a stream sent away with `retry:`
// comes back with Last-Event-ID, as EventSource does), new streams work,
// /readyz 200. Two known gaps are marked todo: the other masters' users hear
// nothing while the node hangs, and an event may arrive twice (ZOMBIE below).
import { once } from 'node:events'
import t from 'tap'
import type { NotifyEvent, Published } from '../src/publish/publisher.js'
import { type Built, build } from './helpers/app.js'
import { startCluster } from './helpers/cluster.js'
import {
  auth, brokerTimeline, historyOf, loopEventAfter, PublishLoop, type PublishVia, untilEvent, usersByMaster, verdict, type Watched, watch,
} from './helpers/cluster-load.js'
import { openStream } from './helpers/sse.js'

const TOKEN = 'publish-token-0123456789abcdef'
const BOUND = 1000
/** What the machine may add to a bound: generous, this is about "not 30 s", not about speed. */
const SLACK = 2500
/**
 * cluster-node-timeout: the hang lasts at least this long before the replica
 * takes over, a window wide enough for the checks below on a busy machine.
 */
const NODE_TIMEOUT_MS = 4000

interface Attempt {
  user: string
  started: number
  ms: number
  status: number
  retryAfter: string | null
  code: unknown
}

/** POST /publish on `s`, every attempt recorded; rejects unless 202. */
function viaHttp(s: Built, attempts: Attempt[]): PublishVia {
  return async (event: NotifyEvent, key?: string): Promise<Published[]> => {
    const started = performance.now()
    const res = await fetch(`${s.base}/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, ...(key !== undefined && { 'idempotency-key': key }) },
      body: JSON.stringify(event),
    })
    const body = (await res.json()) as { published?: Published[]; code?: string }
    const ms = performance.now() - started
    attempts.push({ user: String(event.recipient_id), started, ms, status: res.status, retryAfter: res.headers.get('retry-after'), code: body.code })
    if (res.status !== 202) throw new Error(`${res.status} ${body.code}`)
    return body.published ?? []
  }
}

/**
 * Why a stream of the hung master's users may get one event twice (seen in
 * about one run in five). A publish whose EVALSHA reached the node just as it
 * hung times out (503, outcome unknown) and is retried with the same
 * Idempotency-Key on the promoted replica: published there. When the old
 * master wakes up it still runs the EVALSHA waiting in its socket, before it
 * learns it was demoted; that XADD is dropped by its resync as a replica, but
 * its SPUBLISH is forwarded over the cluster bus to the rest of its shard (the
 * new master), whose subscribers are this service's instances: the event
 * arrives a second time, with an id no history holds.
 */
const ZOMBIE = 'a publish left in a hung master runs when it wakes up and is forwarded to the new master\'s subscribers: delivered twice (see ZOMBIE)'

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())])

t.test('a hung Cluster master: bounded answers, truthful readiness, recovery without a restart', async (t) => {
  const cluster = await startCluster(t, { nodeTimeoutMs: NODE_TIMEOUT_MS })
  const client = cluster.client()
  const env = { PUBLISH_TOKEN: TOKEN, REDIS_COMMAND_TIMEOUT_MS: String(BOUND), HISTORY_SIZE: '2000' }
  const instance = () => build(t, { topology: { env: { REDIS_CLUSTER_NODES: cluster.seeds }, publish: (ch, m) => client.publish(ch, m) }, env })
  const a = await instance()
  const b = await instance()
  const byMaster = await usersByMaster(cluster, 3)
  // Per master: two users with streams on A and B, a third without a stream (yet).
  const users = [...byMaster.values()].flatMap((l) => l.slice(0, 2))
  const [victim, [hungUser, , fresh]] = [...byMaster][0] as [number, [string, string, string]]
  const onVictim = byMaster.get(victim)?.slice(0, 2) ?? []
  const watched: Watched[] = []
  for (const user of users) {
    for (const [on, s] of [['A', a], ['B', b]] as const) watched.push(await watch(t, user, on, `${s.base}/notify`, auth(user)))
  }
  const attempts: Attempt[] = []
  const loop = new PublishLoop(t, { via: [viaHttp(a, attempts), viaHttp(b, attempts)], users, idempotent: true, intervalMs: 50 }).start()
  await Promise.all(watched.map((w) => untilEvent(w, (e) => e.event === 'n', 10_000, 'a first event')))

  const timeline = [brokerTimeline(a), brokerTimeline(b)]
  const downs = [a, b].map((s) => once(s.app.notifier.broker, 'down'))
  const paused = performance.now()
  cluster.pause(victim)
  t.teardown(() => cluster.resume(victim).catch(() => {}))
  await within(Promise.all(downs), BOUND + SLACK, 'both brokers down')
  const down = performance.now()
  t.comment(`master ${victim} paused; both brokers down ${(down - paused).toFixed(0)} ms later`)
  const ups = [a, b].map((s) => once(s.app.notifier.broker, 'up'))

  for (const [name, s] of [['A', a], ['B', b]] as const) {
    const ready = await fetch(`${s.base}/readyz`)
    t.equal(ready.status, 503, `${name}: /readyz answers 503 while the master hangs`)
    t.match(await ready.json(), { redis: 'down' })
  }
  // New streams for users of the hung master: the one with streams here (its
  // channel is subscribed; the history read times out) and one without (the
  // subscription cannot be confirmed).
  for (const [user, s, name] of [[hungUser, a, 'A'], [fresh, b, 'B']] as [string, Built, string][]) {
    const started = performance.now()
    const stream = await openStream(t, `${s.base}/notify`, auth(user))
    await within(stream.ended, BOUND + SLACK, `a new stream for ${user} on ${name} ending`)
    const took = performance.now() - started
    t.equal(stream.status, 200, `new stream for ${user} on ${name}: answered 200 (an EventSource gives up on a 503)`)
    t.equal(stream.retry.at(-1), 3000, 'with retry: last')
    t.equal(stream.events.length, 0, 'and no event')
    t.ok(took < BOUND + SLACK, `ended within the bound (${took.toFixed(0)} ms for ${BOUND} ms)`)
  }

  // The cluster fails the hung master over; the service follows, the node still hung.
  const promoted = await cluster.waitForFailover(victim, cluster.slotOf(`notifications:history:{${hungUser}}`))
  await within(Promise.all(ups), 30_000, 'both brokers up again')
  const up = performance.now()
  t.comment(`${promoted} took over; brokers up ${(up - paused).toFixed(0)} ms after the pause (${(up - down).toFixed(0)} ms down)`)
  for (const [name, s] of [['A', a], ['B', b]] as const) {
    t.equal((await fetch(`${s.base}/readyz`)).status, 200, `${name}: /readyz 200 again, the old master still hung, no restart`)
  }
  await cluster.resume(victim)
  const marks = new Map(users.map((u) => [u, loop.last(u)]))
  await Promise.all(watched.map((w) => untilEvent(w, loopEventAfter(marks.get(w.user) ?? 0), 30_000, 'event published after the recovery')))
  await loop.stop()

  // Every answer that was not a 202 was a prompt 503 with Retry-After, and the hung master's users got some.
  const refused = attempts.filter((x) => x.status !== 202)
  t.ok(refused.some((x) => onVictim.includes(x.user) && x.started >= paused), `publishes to the hung master's users were refused (${refused.length} in all)`)
  t.same(refused.filter((x) => x.status !== 503 || x.retryAfter === null).map((x) => [x.user, x.status, x.code]), [], 'each refusal: 503 with Retry-After')
  const slowest = Math.max(0, ...refused.map((x) => x.ms))
  t.ok(slowest < BOUND + SLACK, `each within the bound (slowest ${slowest.toFixed(0)} ms for ${BOUND} ms)`)
  t.comment(`refusals: ${JSON.stringify(Object.fromEntries(loop.failures))}`)
  // Users on the other masters: publishing to them goes on while the node hangs,
  // until the cluster marks it failed (not before NODE_TIMEOUT_MS): from then
  // until the replica is promoted every node answers CLUSTERDOWN (Redis's
  // cluster-require-full-coverage), and those publishes are refused too.
  const others = attempts.filter((x) => !onVictim.includes(x.user) && x.started >= paused && x.started < paused + NODE_TIMEOUT_MS - 1000)
  t.ok(others.length > 0, `publishes to users on the other masters while the node hung (${others.length})`)
  t.same(others.filter((x) => x.status !== 202).map((x) => [x.user, x.status, x.code]), [], 'all acknowledged')
  const late = attempts.filter((x) => !onVictim.includes(x.user) && x.status !== 202 && x.started >= paused).map((x) => x.started - paused)
  t.comment(`publishes to other masters' users refused (CLUSTERDOWN while the cluster failed the node over): ${late.length}${late.length > 0 ? `, from ${Math.min(...late).toFixed(0)} to ${Math.max(...late).toFixed(0)} ms after the pause` : ''}`)
  // Their streams: each instance holds every stream from its broker's 'down'
  // to its 'up' (resume.ts suspend), so they hear nothing until the failover.
  const heard = watched
    .filter((w) => !onVictim.includes(w.user))
    .map((w) => {
      const { down: [d = 0] = [], up } = timeline[w.on === 'A' ? 0 : 1] as { down: number[]; up: number[] }
      const u = up.find((x) => x > d) ?? Infinity
      return w.arrivals.filter((at) => at > d + 200 && at < u).length
    })
  t.comment(`streams of the other masters' users: events received while their instance was down: [${heard}]`)
  // Only the hung master's users are held (resume.ts holds the users whose channels were lost).
  t.ok(heard.every((n) => n > 0), 'streams of users on the other masters keep getting events while the node hangs')

  // A new stream for the hung master's user works; one more event per user reaches every stream.
  const later = await watch(t, hungUser, 'A (new)', `${a.base}/notify`, auth(hungUser))
  for (const user of users) {
    const id = await loop.publish({ recipient_id: user, type: 'end' }, 'end')
    for (const w of [...watched, later].filter((x) => x.user === user)) await untilEvent(w, (e) => e.id === id, 10_000, 'final `end` event')
  }
  t.pass('no stream stays deaf: the final event reached every stream, and the new one')
  for (const user of users) {
    const history = await historyOf(client, user)
    for (const w of watched.filter((x) => x.user === user)) {
      verdict(t, w, loop.acked.get(user) ?? [], new Set(), history, { allowResync: true, ...(onVictim.includes(user) && { knownDuplicate: ZOMBIE }) })
    }
  }
  const reconnected = watched.filter((w) => w.reconnects > 0).map((w) => `${w.user}@${w.on}`)
  t.comment(`streams sent away with retry: (and back with Last-Event-ID): [${reconnected}]`)
  const resynced = watched.filter((w) => w.events.some((e) => e.event === 'resync')).map((w) => `${w.user}@${w.on}`)
  t.comment(`streams resynced: [${resynced}]`)
})
