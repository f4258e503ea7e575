// Catch-up after an outage (Redis broker): while live delivery is down, events
// are still stored by the script; when the broker is back, every open stream
// reads what it missed from the last id it delivered, before live delivery
// resumes: every event of its user exactly once, in order. When the history did
// not survive (Redis restarted without persistence), streams get `resync`.
import { once } from 'node:events'
import type { EventSourceMessage } from 'eventsource-parser'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { createPublisher } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

const NEEDS_OWN_REDIS = process.env.TEST_REDIS_URL ? 'TEST_REDIS_URL is set: cannot restart that server' : false

// Large enough that an outage never trims what a stream still has to read:
// these tests are about catch-up, not about resync for lack of history.
const ENV = { HISTORY_SIZE: '10000' }

interface Sent {
  n: number
  id: string | null
}

const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })

/**
 * Publishes numbered events through the app's own publisher (the script),
 * round-robin over `users`, one after the other, as fast as the loop turns. A
 * publish that fails (Redis down) is retried until it succeeds: a failed publish
 * is not an event, and only successful ones are recorded.
 */
type PublishOne = (user: string, n: number) => Promise<string | null>

/** Through the app's own publisher: the script, on the app's command connection. */
const viaApp =
  (s: Built): PublishOne =>
  async (user, n) =>
    (await s.store({ recipient_id: user, type: 'feed', n }))[0]?.id ?? null

class Feed {
  readonly sent = new Map<string, Sent[]>()
  total = 0
  failures = 0
  #stopped = false
  #gate: Promise<void> | undefined
  #open: (() => void) | undefined
  #atGate: (() => void) | undefined
  #waiters: { ready: () => boolean; resolve: () => void }[] = []
  readonly #done: Promise<void>

  constructor(
    private readonly publish: PublishOne,
    private readonly users: string[],
  ) {
    for (const u of users) this.sent.set(u, [])
    this.#done = this.#run()
  }

  async #run(): Promise<void> {
    for (let n = 1; !this.#stopped; n++) {
      if (this.#gate !== undefined) {
        this.#atGate?.()
        await this.#gate
      }
      const user = this.users[n % this.users.length] as string
      for (;;) {
        try {
          const id = await this.publish(user, n)
          this.sent.get(user)?.push({ n, id })
          this.total++
          break
        } catch {
          this.failures++
          this.#wake()
          // A short back-off while Redis is away; the publish is retried as is.
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }
      this.#wake()
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  #wake(): void {
    for (const w of [...this.#waiters]) {
      if (!w.ready()) continue
      this.#waiters.splice(this.#waiters.indexOf(w), 1)
      w.resolve()
    }
  }

  #until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ ready, resolve }))
  }

  /** Resolves once `count` more events have been published. */
  more(count: number): Promise<void> {
    const target = this.total + count
    return this.#until(() => this.total >= target)
  }

  /** Resolves once `count` more publishes have failed. */
  moreFailures(count: number): Promise<void> {
    const target = this.failures + count
    return this.#until(() => this.failures >= target)
  }

  /** Resolves when no publish is in flight; nothing is published until resume(). */
  pause(): Promise<void> {
    this.#gate = new Promise((resolve) => (this.#open = resolve))
    return new Promise((resolve) => (this.#atGate = resolve))
  }

  resume(): void {
    this.#gate = undefined
    this.#open?.()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.resume()
    await this.#done
  }
}

/**
 * Publishes one `end` sentinel per user and resolves, per stream, with what it
 * got before its user's sentinel.
 */
async function untilEnd(s: Built, streams: [user: string, stream: TestStream][]): Promise<EventSourceMessage[][]> {
  const from = streams.map(([, stream]) => stream.events.length + 1)
  const ends = new Map<string, string | null | undefined>()
  for (const [user] of streams) if (!ends.has(user)) ends.set(user, (await s.store({ recipient_id: user, type: 'end' }))[0]?.id)
  return Promise.all(
    streams.map(async ([user, stream], i) => {
      for (let n = from[i] as number; ; n++) {
        const events = await stream.nextEvents(n)
        if (events[n - 1]?.id === ends.get(user)) return events.slice(0, -1)
      }
    }),
  )
}

/** Stored events published before the test's feed: compared by id, numbered from -100. */
const numberPrior = (events: EventSourceMessage[]) =>
  events.map((e, i) => (e.event === 'prior' ? { ...e, data: JSON.stringify({ n: -100 + i }) } : e))
const priorAfterFirst = (prior: { id: string | null }[]) => prior.slice(1).map((p, i) => ({ n: -100 + i, id: p.id }))

/** Missing event numbers, compactly: consecutive ones of a user (n, n+3, ...) as `first..last (count)`. */
function runs(ns: number[]): string[] {
  const out: string[] = []
  let start = 0
  for (let i = 1; i <= ns.length; i++) {
    const gap = i < ns.length ? (ns[i] as number) - (ns[i - 1] as number) : Infinity
    if (i < ns.length && gap <= 3) continue
    out.push(i - start === 1 ? String(ns[start]) : `${ns[start]}..${ns[i - 1]} (${i - start})`)
    start = i
  }
  return out.slice(0, 20)
}

/**
 * The stream's events must be exactly `want`. On a mismatch, says what is
 * missing, duplicated or out of order rather than dumping thousands of events.
 */
function sameSequence(t: Test, got: EventSourceMessage[], want: Sent[], label: string): void {
  const g = got.map((e) => ({ n: e.event === 'resync' ? -1 : (JSON.parse(e.data).n as number), id: e.id ?? null }))
  const key = (x: Sent) => `${x.n}@${x.id}`
  const wantKeys = new Set(want.map(key))
  const counts = new Map<string, number>()
  for (const x of g) counts.set(key(x), (counts.get(key(x)) ?? 0) + 1)
  const missing = want.filter((x) => !counts.has(key(x))).map((x) => x.n)
  const duplicated = [...counts].filter(([, c]) => c > 1).map(([k]) => k)
  const unexpected = g.filter((x) => !wantKeys.has(key(x))).map(key)
  const firstMismatch = g.findIndex((x, i) => key(x) !== (want[i] && key(want[i])))
  t.same(
    { count: g.length, missing: runs(missing), duplicated: duplicated.slice(0, 20), unexpected: unexpected.slice(0, 20) },
    { count: want.length, missing: [], duplicated: [], unexpected: [] },
    `${label}: ${want.length} events, each exactly once`,
  )
  t.equal(firstMismatch === -1 && g.length === want.length, true, `${label}: in order (first difference at ${firstMismatch})`)
}

/** Stores three `prior` events for `a`, then opens a stream each for a, b, c (no id: live from here). */
async function openStreams(t: Test, s: Built) {
  const prior = await s.store(['p0', 'p1', 'p2'].map((k) => ({ recipient_id: 'a', type: 'prior', k })))
  const streams = {
    a1: await openStream(t, `${s.base}/notify`, auth('a')),
    b: await openStream(t, `${s.base}/notify`, auth('b')),
    c: await openStream(t, `${s.base}/notify`, auth('c')),
  }
  return { prior, streams }
}

/** A stream of `a` resuming from the first prior event: it must get p1, p2, then everything. */
const resumeA = (t: Test, s: Built, prior: { id: string | null }[]) =>
  openStream(t, `${s.base}/notify`, { ...auth('a'), 'last-event-id': prior[0]?.id ?? '' })

t.test('the subscriber killed (CLIENT KILL TYPE pubsub) while the script publishes', async (t) => {
  const s = await build(t, { env: ENV })
  const admin = s.redis.client()
  const broker = s.app.notifier.broker
  const stats = s.app.notifier.resumer.stats
  const { prior, streams } = await openStreams(t, s)
  const feed = new Feed(viaApp(s), ['a', 'b', 'c'])
  t.teardown(() => feed.stop())
  await feed.more(30)
  // Joins while the feed runs: the rest of the history, then everything the feed publishes.
  const a2 = await resumeA(t, s, prior)
  let a3: TestStream | undefined

  const catchUps = stats.catchUps
  const replayed = stats.replayed
  const KILLS = 5
  for (let k = 0; k < KILLS; k++) {
    await feed.more(50)
    const cycle = new Promise<void>((resolve) => broker.once('down', () => broker.once('up', resolve)))
    const down = once(broker, 'down')
    t.equal(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, `kill ${k + 1}: the one subscriber connection`)
    await down
    // One stream joins while live delivery is down: its read works (the command
    // connection is up), and the catch-up reads for it again.
    if (k === 0) a3 = await resumeA(t, s, prior)
    await cycle
    await feed.more(50)
  }
  await feed.stop()
  t.ok(stats.catchUps - catchUps >= KILLS, `a catch-up per recovery (${stats.catchUps - catchUps})`)
  t.ok(stats.replayed > replayed, `missed events were read from history (${stats.replayed - replayed})`)

  const feedOf = (u: string) => feed.sent.get(u) ?? []
  const [a1Got, a2Got, a3Got, bGot, cGot] = await untilEnd(s, [
    ['a', streams.a1],
    ['a', a2],
    ['a', a3 as TestStream],
    ['b', streams.b],
    ['c', streams.c],
  ])
  sameSequence(t, a1Got ?? [], feedOf('a'), 'a (live from the start)')
  sameSequence(t, numberPrior(a2Got ?? []), [...priorAfterFirst(prior), ...feedOf('a')], 'a (Last-Event-ID, joined mid-feed)')
  sameSequence(t, numberPrior(a3Got ?? []), [...priorAfterFirst(prior), ...feedOf('a')], 'a (Last-Event-ID, joined during an outage)')
  sameSequence(t, bGot ?? [], feedOf('b'), 'b')
  sameSequence(t, cGot ?? [], feedOf('c'), 'c')
  t.same(stats.resyncs, { malformed: 0, foreign: 0, gone: 0 }, 'never a resync')
  t.comment(`${feed.total} events published, ${stats.replayed - replayed} caught up over ${KILLS} outages`)
})

t.test('redis restarted (with persistence) while events are published', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t, { persist: true })
  const s = await build(t, { redis, env: ENV })
  const broker = s.app.notifier.broker
  const stats = s.app.notifier.resumer.stats
  const { prior, streams } = await openStreams(t, s)
  // Two publishers: the app's own (the script on its command connection) for b
  // and c, and a backend's (createPublisher on its own connection, which comes
  // back before the app has resubscribed) for a and d: its events are stored
  // while the app cannot see them live, and must be caught up.
  const backendClient = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 20 })
  backendClient.on('error', () => {})
  t.teardown(() => backendClient.disconnect())
  const backend = createPublisher({ redis: backendClient, historySize: 10_000 })
  const viaBackend: PublishOne = async (user, n) => (await backend.publish({ recipient_id: user, type: 'feed', n }))[0]?.id ?? null
  const d = await openStream(t, `${s.base}/notify`, auth('d'))
  const feeds = [new Feed(viaApp(s), ['b', 'c']), new Feed(viaBackend, ['a', 'd'])]
  t.teardown(() => Promise.all(feeds.map((f) => f.stop())))
  await Promise.all(feeds.map((f) => f.more(30)))
  const a2 = await resumeA(t, s, prior)

  const replayed = stats.replayed
  const RESTARTS = 3
  for (let r = 0; r < RESTARTS; r++) {
    await Promise.all(feeds.map((f) => f.more(40)))
    // Nothing in flight when Redis stops: a publish cut off mid-way would leave
    // the publisher unsure whether it was stored.
    await Promise.all(feeds.map((f) => f.pause()))
    const down = once(broker, 'down')
    await redis.stop()
    await down
    for (const f of feeds) f.resume()
    await Promise.all(feeds.map((f) => f.moreFailures(3)))
    const up = once(broker, 'up')
    await redis.start()
    await up
    await Promise.all(feeds.map((f) => f.more(40)))
  }
  await Promise.all(feeds.map((f) => f.stop()))
  const [appFeed, backendFeed] = feeds as [Feed, Feed]
  t.ok(appFeed.failures > 0 && backendFeed.failures > 0, `publishes failed while Redis was down and were retried (${appFeed.failures}, ${backendFeed.failures})`)
  const feedOf = (u: string) => (u === 'a' || u === 'd' ? backendFeed : appFeed).sent.get(u) ?? []
  t.equal(await s.redis.client().xlen('notifications:history:{a}'), 3 + feedOf('a').length, 'the history survived')
  t.ok(stats.replayed > replayed, `events stored while the app was not subscribed were read from history (${stats.replayed - replayed})`)

  const [a1Got, a2Got, bGot, cGot, dGot] = await untilEnd(s, [
    ['a', streams.a1],
    ['a', a2],
    ['b', streams.b],
    ['c', streams.c],
    ['d', d],
  ])
  sameSequence(t, a1Got ?? [], feedOf('a'), 'a (live from the start)')
  sameSequence(t, numberPrior(a2Got ?? []), [...priorAfterFirst(prior), ...feedOf('a')], 'a (Last-Event-ID)')
  sameSequence(t, bGot ?? [], feedOf('b'), 'b')
  sameSequence(t, cGot ?? [], feedOf('c'), 'c')
  sameSequence(t, dGot ?? [], feedOf('d'), 'd')
  t.same(stats.resyncs, { malformed: 0, foreign: 0, gone: 0 }, 'never a resync')
  t.comment(`${appFeed.total + backendFeed.total} events published, ${appFeed.failures + backendFeed.failures} failed publishes retried, ${stats.replayed - replayed} caught up`)
})

t.test('redis restarted without persistence: open streams get resync, then every later event', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis, env: ENV })
  const broker = s.app.notifier.broker
  const stats = s.app.notifier.resumer.stats
  const { prior, streams } = await openStreams(t, s)
  const a2 = await resumeA(t, s, prior)
  const all: [name: string, user: string, stream: TestStream][] = [
    ['a1', 'a', streams.a1],
    ['a2', 'a', a2],
    ['b', 'b', streams.b],
    ['c', 'c', streams.c],
  ]

  const feed = new Feed(viaApp(s), ['a', 'b', 'c'])
  t.teardown(() => feed.stop())
  await feed.more(60)
  await feed.pause()
  const before = new Map([...feed.sent].map(([u, list]) => [u, list.length]))
  // Everything published so far has been delivered: what the restart loses is history only.
  await Promise.all(
    all.map(async ([, user, stream]) => {
      const last = feed.sent.get(user)?.at(-1)?.id
      for (let n = 1; ; n++) if ((await stream.nextEvents(n))[n - 1]?.id === last) return
    }),
  )
  const down = once(broker, 'down')
  await redis.stop()
  await down
  feed.resume()
  await feed.moreFailures(3)
  const up = once(broker, 'up')
  await redis.start()
  await up
  await feed.more(60)
  await feed.stop()

  const got = await untilEnd(s, all.map(([, user, stream]) => [user, stream]))
  all.forEach(([name, user], i) => {
    const events = got[i] ?? []
    const sent = feed.sent.get(user) ?? []
    const cut = before.get(user) ?? 0
    const at = events.findIndex((e) => e.event === 'resync')
    t.not(at, -1, `${name}: told to resync`)
    t.equal(events.filter((e) => e.event === 'resync').length, 1, `${name}: once`)
    t.equal(events[at]?.data, '{}')
    // Before: exactly what was published before the restart.
    const expected = [...(name === 'a2' ? priorAfterFirst(prior) : []), ...sent.slice(0, cut)]
    sameSequence(t, numberPrior(events.slice(0, at)), expected, `${name} before the restart`)
    // After: what resync does not cover is a contiguous run up to the newest event.
    const post = events.slice(at + 1)
    t.ok(post.length > 0, `${name}: live again after resync`)
    const after = sent.slice(cut)
    sameSequence(t, post, after.slice(after.length - post.length), `${name} after resync: no gap up to the newest`)
  })
  t.equal(stats.resyncs.gone, 4, 'one resync per open stream')
})

t.test('catch-up of 300 streams is pipelined', async (t) => {
  const redis = await startRedis(t)
  // The app's own command connection (as RedisBroker makes it), with a counter
  // on pipeline(): how many round trips the history reads take.
  const commands = new Redis(redis.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(times * 100, 2000),
    connectionName: 'notify-commands',
  })
  let pipelines = 0
  const pipeline = commands.pipeline.bind(commands)
  commands.pipeline = ((...args: Parameters<typeof pipeline>) => {
    pipelines++
    return pipeline(...args)
  }) as typeof commands.pipeline
  const s = await build(t, { redis, env: ENV, deps: { commandClient: commands } })
  const admin = redis.client()
  const broker = s.app.notifier.broker
  const stats = s.app.notifier.resumer.stats

  const N = 300
  const users = Array.from({ length: N }, (_, i) => `m${i}`)
  await s.store(users.map((u) => ({ recipient_id: u, type: 'before' })))
  const streams = await Promise.all(users.map((u) => openStream(t, `${s.base}/notify`, auth(u))))
  t.equal(s.app.notifier.hub.size, N, `${N} streams open`)

  const calls = async (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await admin.info('commandstats'))?.[1] ?? 0)
  // Between here and the catch-up only the publish script reads history: the
  // newest entry of the recipient's, once per stored event (the collapse bookkeeping).
  const reads = { xrange: await calls('xrange'), xrevrange: await calls('xrevrange') }
  const down = once(broker, 'down')
  t.equal(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, 'the subscriber connection killed')
  await down
  const up = once(broker, 'up')
  const missed = await s.store(users.map((u) => ({ recipient_id: u, type: 'missed' })))
  t.equal(broker.up, false, 'stored while live delivery was down (else this run proves nothing: rerun)')
  const base = { catchUps: stats.catchUps, replayed: stats.replayed }
  pipelines = 0
  await up

  const firsts = await Promise.all(streams.map((st) => st.nextEvents(1)))
  const wrong = firsts.filter(([e], i) => e?.event !== 'missed' || e.id !== missed[i]?.id).length
  t.equal(wrong, 0, `all ${N} streams got the event they missed, with its id`)
  t.equal(stats.catchUps - base.catchUps, 1, 'one catch-up round')
  t.equal(stats.replayed - base.replayed, N, 'one event replayed per stream')
  t.same(stats.resyncs, { malformed: 0, foreign: 0, gone: 0 }, 'no resync')
  t.equal((await calls('xrange')) - reads.xrange, N, 'one range read per stream')
  t.equal((await calls('xrevrange')) - reads.xrevrange - missed.length, N, 'one tip read per stream (besides the script\'s)')
  t.ok(pipelines <= 2, `the 600 reads went out in ${pipelines} pipeline(s) (batches of 256), not one round trip per stream`)
})
