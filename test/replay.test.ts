// Replay: a client that reconnects with the last event id it has gets every
// stored event after it, in order, then live events: no gap, no duplicate. When
// the id cannot be honoured (malformed, someone else's, unknown, trimmed,
// expired, history off) the stream starts with `resync`. The same suite runs
// against both brokers: Redis (the Lua script, Streams) and embedded (memory).
import { createHash } from 'node:crypto'
import type { EventSourceMessage } from 'eventsource-parser'
import t, { type Test } from 'tap'
import type { MemoryBroker } from '../src/broker/memory-broker.js'
import type { Published } from '../src/publish/publisher.js'
import { type Built, build } from './helpers/app.js'
import { openStream, type TestStream } from './helpers/sse.js'


const ID = /^(\d+)-(\d+)\.([0-9a-f]{8})$/

/** The tag every id of a recipient ends with: computed here, not by the code under test. */
const tag = (recipient: string): string => createHash('sha1').update(recipient, 'utf8').digest('hex').slice(0, 8)

const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })

interface Resume {
  /** Sent as the Last-Event-ID header. Null (an event stored without id) is a mistake of the test. */
  header?: string | null
  /** Sent as ?lastEventId= (raw query string when `rawQuery` is set). */
  query?: string
  rawQuery?: string
}

function connect(t: Test, s: Built, user: string, resume: Resume = {}): Promise<TestStream> {
  if (resume.header === null) throw new Error('resuming from an event that has no id')
  const query = resume.rawQuery ?? (resume.query === undefined ? '' : `lastEventId=${encodeURIComponent(resume.query)}`)
  const headers = { ...auth(user), ...(resume.header !== undefined && { 'last-event-id': resume.header }) }
  return openStream(t, `${s.base}/notify${query === '' ? '' : `?${query}`}`, headers)
}

/** Stores one event per `n` for `user`, in order; returns what the publisher was told. */
async function storeMany(s: Built, user: string, ns: number[], type = 'n'): Promise<Published[]> {
  const out: Published[] = []
  for (const n of ns) out.push(...(await s.store({ recipient_id: user, type, n })))
  return out
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** (n, id) of received events, to compare with what was published. */
const seen = (events: EventSourceMessage[]) => events.map((e) => ({ n: JSON.parse(e.data).n as number, id: e.id }))
const sent = (published: Published[], ns: number[]) => published.map((p, i) => ({ n: ns[i] as number, id: p.id }))

/** Publishes a marker for `user` and resolves with everything the stream got up to and including it. */
async function untilMarker(s: Built, stream: TestStream, user: string): Promise<EventSourceMessage[]> {
  // Counted from before the publish: the live event may arrive before the publisher's answer.
  const from = stream.events.length + 1
  const [marker] = await s.store({ recipient_id: user, type: 'marker' })
  for (let n = from; ; n++) {
    const events = await stream.nextEvents(n)
    if (events[n - 1]?.id === marker?.id) return events
  }
}

/** Waits for a recipient's history to be gone by expiry (Redis: the key; polled, Redis expires by itself). */
async function awaitKeyExpiry(s: Built, user: string): Promise<void> {
  const admin = s.redis.client()
  const key = `notifications:history:{${user}}`
  const deadline = Date.now() + 10_000
  while ((await admin.exists(key)) === 1) {
    if (Date.now() > deadline) throw new Error(`${key} did not expire`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A small seeded PRNG (mulberry32): the interleavings are random but reproducible from the logged seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Rejects with `what` if `p` takes longer than `ms`: a gap would otherwise hang the test until tap's timeout. */
function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Yields to the event loop for a random while: none, a microtask turn, an immediate, or a few ms. */
function jitter(rand: () => number): Promise<void> {
  const r = rand()
  if (r < 0.25) return Promise.resolve()
  if (r < 0.5) return new Promise((resolve) => setImmediate(resolve))
  return new Promise((resolve) => setTimeout(resolve, Math.floor(rand() * 4)))
}

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker} broker`, async (t) => {
    t.test('replay via Last-Event-ID header: the events after it, in order, then live', async (t) => {
      const s = await build(t, { broker })
      const ns = range(0, 5)
      const published = await storeMany(s, 'h', ns)
      for (const p of published) {
        t.match(p.id, ID, 'every stored event has an id')
        t.equal(ID.exec(p.id ?? '')?.[3], tag('h'), 'tagged with sha1(recipient)')
      }
      const stream = await connect(t, s, 'h', { header: published[1]?.id })
      const replayed = await stream.nextEvents(3)
      t.same(seen(replayed), sent(published.slice(2), ns.slice(2)), 'events 2..4 with their ids')
      t.ok(replayed.every((e) => e.event === 'n'), 'with their type')
      t.same(JSON.parse(replayed[0]?.data ?? ''), { recipient_id: 'h', type: 'n', n: 2 }, 'with their data')
      const [live] = await s.store({ recipient_id: 'h', type: 'n', n: 5 })
      const events = await untilMarker(s, stream, 'h')
      t.same(seen(events.slice(0, 4)), [...sent(published.slice(2), ns.slice(2)), { n: 5, id: live?.id }], 'then live, once')
      t.equal(events.length, 5, 'nothing else: no duplicate, no resync')
      t.equal(s.app.notifier.resumer.stats.replayed, 3)
    })

    t.test('replay via ?lastEventId= query parameter', async (t) => {
      const s = await build(t, { broker })
      const ns = range(0, 4)
      const published = await storeMany(s, 'q', ns)
      const stream = await connect(t, s, 'q', { query: published[0]?.id ?? '' })
      t.same(seen(await stream.nextEvents(3)), sent(published.slice(1), ns.slice(1)))
      const events = await untilMarker(s, stream, 'q')
      t.equal(events.length, 4, 'no duplicate, no resync')
    })

    t.test('the header wins over the query parameter', async (t) => {
      const s = await build(t, { broker })
      const ns = range(0, 4)
      const published = await storeMany(s, 'hq', ns)
      const stream = await connect(t, s, 'hq', { header: published[2]?.id, query: published[0]?.id ?? '' })
      const events = await untilMarker(s, stream, 'hq')
      t.same(seen(events.slice(0, 1)), sent(published.slice(3), ns.slice(3)))
      t.equal(events.length, 2)
    })

    t.test('replay from the newest id: nothing, then live', async (t) => {
      const s = await build(t, { broker })
      const published = await storeMany(s, 'tip', range(0, 3))
      const stream = await connect(t, s, 'tip', { header: published[2]?.id })
      const events = await untilMarker(s, stream, 'tip')
      t.same(events.map((e) => e.event), ['marker'])
    })

    t.test('a connect without an id starts live', async (t) => {
      const s = await build(t, { broker })
      await storeMany(s, 'fresh', range(0, 3))
      const stream = await connect(t, s, 'fresh')
      const [later] = await s.store({ recipient_id: 'fresh', type: 'later' })
      const events = await untilMarker(s, stream, 'fresh')
      t.same(events.map((e) => e.event), ['later', 'marker'], 'only later events, no resync')
      t.equal(events[0]?.id, later?.id)
      t.equal(s.app.notifier.resumer.stats.replayed, 0)
    })

    // Each reason: the stream starts with `resync` (data {}, no id), nothing of the
    // history is replayed, and live events follow.
    const expectResync = async (t: Test, s: Built, user: string, stream: TestStream) => {
      const [first] = await stream.nextEvents(1)
      t.equal(first?.event, 'resync', 'starts with resync')
      t.equal(first?.data, '{}')
      t.equal(first?.id, undefined, 'resync carries no id')
      // Right after it, where the stream now stands (sent with the resync, in the same write).
      t.equal(stream.positions.length, 1, 'then its position')
      t.match(stream.positions[0], new RegExp(`^\\d+-\\d+\\.${tag(user)}$`), "an id of the user's")
      const [live] = await s.store({ recipient_id: user, type: 'live' })
      const events = await untilMarker(s, stream, user)
      t.same(events.map((e) => e.event), ['resync', 'live', 'marker'], 'then live events only')
      t.equal(events[1]?.id, live?.id)
    }

    t.test('resync: malformed id', async (t) => {
      const s = await build(t, { broker })
      const published = await storeMany(s, 'm', range(0, 3))
      const valid = published[0]?.id ?? ''
      const cases: [string, Resume][] = [
        ['garbage header', { header: 'garbage' }],
        ['no tag', { header: valid.replace(/\..*$/, '') }],
        ['upper-case tag', { header: valid.replace(/\.(.*)$/, (_, x: string) => `.${x.toUpperCase()}`) }],
        ['short tag', { header: valid.slice(0, -1) }],
        ['too long', { header: `${'1'.repeat(40)}-${'1'.repeat(30)}.${tag('m')}` }],
        ['garbage query', { query: 'not-an-id' }],
        ['repeated query parameter', { rawQuery: `lastEventId=${encodeURIComponent(valid)}&lastEventId=${encodeURIComponent(valid)}` }],
      ]
      for (const [what, resume] of cases) {
        await t.test(what, async (t) => {
          const before = s.app.notifier.resumer.stats.resyncs.malformed
          await expectResync(t, s, 'm', await connect(t, s, 'm', resume))
          t.equal(s.app.notifier.resumer.stats.resyncs.malformed, before + 1, 'counted as malformed')
        })
      }
    })

    t.test("resync: someone else's id", async (t) => {
      const s = await build(t, { broker })
      const [bobs] = await storeMany(s, 'bob', [0])
      await storeMany(s, 'alice', [0, 1])
      t.not(tag('alice'), tag('bob'))
      for (const resume of [{ header: bobs?.id }, { query: bobs?.id ?? '' }]) {
        const stream = await connect(t, s, 'alice', resume)
        await expectResync(t, s, 'alice', stream)
      }
      t.equal(s.app.notifier.resumer.stats.resyncs.foreign, 2, 'counted as foreign')
    })

    t.test('resync: an unknown id that looks valid', async (t) => {
      const s = await build(t, { broker })
      const published = await storeMany(s, 'u', range(0, 3))
      const [, ms] = ID.exec(published[1]?.id ?? '') ?? []
      const cases: [string, string, string][] = [
        ['older than anything stored', 'u', `1-0.${tag('u')}`],
        ['a sequence number never used', 'u', `${ms}-999.${tag('u')}`],
        ['from the future', 'u', `${Date.now() + 3_600_000}-0.${tag('u')}`],
        ['a recipient without any history', 'nobody', `${ms}-0.${tag('nobody')}`],
      ]
      for (const [what, user, id] of cases) {
        await t.test(what, async (t) => {
          const before = s.app.notifier.resumer.stats.resyncs.gone
          await expectResync(t, s, user, await connect(t, s, user, { header: id }))
          t.equal(s.app.notifier.resumer.stats.resyncs.gone, before + 1)
        })
      }
    })

    // `0-0` is no stored event's id: it is the position a first visit is given
    // while its history is empty (a `position` event). Coming back with it,
    // everything stored since is replayed; once the history has filled up (it
    // may have been trimmed), a resync.
    t.test('the id 0-0 (a first visit, history empty then): everything stored since', async (t) => {
      const s = await build(t, { broker, env: { HISTORY_SIZE: '5' } })
      const first = await connect(t, s, 'zero')
      t.same(first.positions, [`0-0.${tag('zero')}`], 'the fresh stream is told its position: before everything')
      first.close()
      const published = await storeMany(s, 'zero', range(0, 3))
      const back = await connect(t, s, 'zero', { header: first.positions[0] as string })
      t.same(seen((await untilMarker(s, back, 'zero')).slice(0, -1)), sent(published, range(0, 3)), 'the three published meanwhile, in order, once')
      t.same(back.positions, [], 'no position: it resumed from an id')
      // The history full (3 + the marker + 1 = 5 = HISTORY_SIZE): 0-0 may have missed trimmed events.
      await storeMany(s, 'zero', [3])
      await expectResync(t, s, 'zero', await connect(t, s, 'zero', { header: `0-0.${tag('zero')}` }))
    })

    t.test('resync: trimmed out of a small history (HISTORY_SIZE=3)', async (t) => {
      const s = await build(t, { broker, env: { HISTORY_SIZE: '3' } })
      const ns = range(0, 6)
      // One user per case: every case publishes (live, marker) and would trim the next one's history.
      const history = async (user: string) => {
        const published = await storeMany(s, user, ns)
        if (broker === 'redis') t.equal(await s.redis.client().xlen(`notifications:history:{${user}}`), 3, 'three entries kept')
        return published
      }
      for (const i of [0, 2]) {
        await t.test(`event ${i} of 6 is gone`, async (t) => {
          const user = `tr${i}`
          const published = await history(user)
          await expectResync(t, s, user, await connect(t, s, user, { header: published[i]?.id }))
        })
      }
      await t.test('the oldest event kept still resumes', async (t) => {
        const published = await history('tr3')
        const stream = await connect(t, s, 'tr3', { header: published[3]?.id })
        t.same(seen(await stream.nextEvents(2)), sent(published.slice(4), ns.slice(4)))
        const events = await untilMarker(s, stream, 'tr3')
        t.same(events.map((e) => e.event), ['n', 'n', 'marker'])
      })
    })

    t.test('resync: expired history (HISTORY_TTL_S=1)', async (t) => {
      // Redis expires the key itself (polled with EXISTS); the embedded broker
      // reads an injected clock, moved forward past the TTL.
      let skew = 0
      const now = () => Date.now() + skew
      const s = await build(t, { broker, env: { HISTORY_TTL_S: '1' }, ...(broker === 'embedded' && { deps: { now } }) })
      const expire = async (user: string) => {
        if (broker === 'redis') await awaitKeyExpiry(s, user)
        else skew += 1500
        if (broker === 'embedded') {
          const history = (s.app.notifier.broker as MemoryBroker).history
          t.equal(history.read(user, { ms: 0, seq: 0 }).tip, undefined, 'the memory history is gone')
        }
      }
      await t.test('the history is gone', async (t) => {
        const [old] = await storeMany(s, 'ex', [0])
        await expire('ex')
        await expectResync(t, s, 'ex', await connect(t, s, 'ex', { header: old?.id }))
      })
      await t.test('the history is gone and has new events since', async (t) => {
        const [old] = await storeMany(s, 'ex2', [0])
        await expire('ex2')
        await storeMany(s, 'ex2', [1])
        await expectResync(t, s, 'ex2', await connect(t, s, 'ex2', { header: old?.id }))
      })
    })

    t.test('HISTORY_SIZE=0: no ids; an id gets resync; no id starts live', async (t) => {
      const s = await build(t, { broker, env: { HISTORY_SIZE: '0' } })
      const plain = await connect(t, s, 'off')
      const [p] = await s.store({ recipient_id: 'off', type: 'x' })
      t.equal(p?.id, null, 'the publisher gets no id')
      const [e] = await plain.nextEvents(1)
      t.equal(e?.event, 'x')
      t.equal(e?.id, undefined, 'no id: line')
      t.notMatch(plain.raw(), /^id:/m)
      if (broker === 'redis') t.equal(await s.redis.client().exists('notifications:history:{off}'), 0, 'nothing stored')
      else t.equal((s.app.notifier.broker as MemoryBroker).history.recipients, 0, 'nothing stored')

      for (const resume of [{ header: `${Date.now()}-0.${tag('off')}` }, { query: 'garbage' }]) {
        const stream = await connect(t, s, 'off', resume)
        const [first] = await stream.nextEvents(1)
        t.equal(first?.event, 'resync', 'an id cannot be honoured')
        await s.store({ recipient_id: 'off', type: 'after' })
        const [, second] = await stream.nextEvents(2)
        t.equal(second?.event, 'after')
      }
      t.equal(plain.events.filter((ev) => ev.event === 'resync').length, 0, 'a connect without id never gets resync')
    })

    t.test('multi-recipient events: each recipient its own id and its own recipient_id', async (t) => {
      const s = await build(t, { broker })
      const [before] = await storeMany(s, 'ma', [0])
      const a = await connect(t, s, 'ma')
      const b = await connect(t, s, 'mb')
      const published = await s.store({ recipient_ids: ['ma', 'mb', 'ma'], type: 'multi', k: 1 })
      t.same(published.map((p) => p.recipient_id), ['ma', 'mb'], 'one copy per distinct recipient')
      t.equal(ID.exec(published[0]?.id ?? '')?.[3], tag('ma'))
      t.equal(ID.exec(published[1]?.id ?? '')?.[3], tag('mb'))
      const [ea] = await a.nextEvents(1)
      const [eb] = await b.nextEvents(1)
      t.equal(ea?.id, published[0]?.id)
      t.equal(eb?.id, published[1]?.id)
      t.same(JSON.parse(ea?.data ?? ''), { recipient_id: 'ma', type: 'multi', k: 1 }, 'a sees itself only')
      t.same(JSON.parse(eb?.data ?? ''), { recipient_id: 'mb', type: 'multi', k: 1 }, 'b sees itself only')

      // The copy is what is stored: a replay gives the same.
      const again = await connect(t, s, 'ma', { header: before?.id })
      const [replayed] = await again.nextEvents(1)
      t.equal(replayed?.id, published[0]?.id)
      t.equal(replayed?.data, ea?.data)

      if (broker === 'redis') {
        // A raw PUBLISH (no script) is delivered live, without id, and is not stored.
        await s.publish({ recipient_ids: ['ma', 'mb'], type: 'raw' })
        const [, ra] = await a.nextEvents(2)
        const [, rb] = await b.nextEvents(2)
        for (const e of [ra, rb]) {
          t.equal(e?.event, 'raw')
          t.equal(e?.id, undefined, 'no id')
          t.same(JSON.parse(e?.data ?? ''), { type: 'raw' }, 'as published, without the list of recipients')
        }
        t.equal(await s.redis.client().xlen('notifications:history:{ma}'), 2, 'not stored')
        const resumed = await connect(t, s, 'ma', { header: before?.id })
        const events = await untilMarker(s, resumed, 'ma')
        t.same(events.map((e) => e.event), ['multi', 'marker'], 'not replayed')
      }
    })

    // The important one. One user per iteration; a publisher stores numbered
    // events without waiting for the reader; the reader drops its connection at
    // random points and comes back with the last id it saw (header or query).
    // In the end it must have every event exactly once, in order.
    t.test('no gap and no duplicate while events are published during reconnects', async (t) => {
      const s = await build(t, { broker })
      const seed = Number(process.env.REPLAY_SEED ?? Math.floor(Math.random() * 2 ** 31))
      t.comment(`seed ${seed} (set REPLAY_SEED to repeat)`)
      const rand = prng(seed)
      const ITERATIONS = 40
      const PARALLEL = 4
      let reconnects = 0

      const iteration = async (i: number) => {
        const user = `race-${i}`
        const total = 20 + Math.floor(rand() * 40) // below HISTORY_SIZE (100): nothing is trimmed
        const [seedEvent] = await s.store({ recipient_id: user, type: 'seed' })
        const published: { n: number; id: string | null }[] = []
        const publishing = (async () => {
          for (let n = 1; n <= total; n++) {
            const [p] = await s.store({ recipient_id: user, type: 'n', n })
            published.push({ n, id: p?.id ?? null })
            await jitter(rand)
          }
        })()

        const received: EventSourceMessage[] = []
        let last = seedEvent?.id ?? ''
        const drops = 1 + Math.floor(rand() * 3)
        for (let d = 0; d < drops; d++) {
          const stream = await connect(t, s, user, rand() < 0.5 ? { header: last } : { query: last })
          reconnects++
          const remaining = total - received.length
          const want = Math.min(remaining, Math.floor(rand() * (remaining / (drops - d) + 2)))
          if (want > 0) {
            const have = () => `${user} waited for ${want} events, got ${stream.events.length}; ${received.length} before, ${published.length} published`
            await within(stream.nextEvents(want), 10_000, have)
          }
          await jitter(rand)
          // What the reader has when it hangs up is what it saw; nothing after counts.
          stream.close()
          const got = stream.events.slice()
          received.push(...got)
          last = got.at(-1)?.id ?? last
          await jitter(rand)
        }
        const final = await connect(t, s, user, rand() < 0.5 ? { header: last } : { query: last })
        await publishing
        const rest = await within(untilMarker(s, final, user), 10_000, () => `${user}: the marker did not arrive; ${final.events.length} events on the last connection, ${published.length} published, ${received.length} before; tail of the stream: ${JSON.stringify(final.raw().slice(-400))}`)
        received.push(...rest.slice(0, -1))
        t.same(
          received.map((e) => ({ event: e.event, n: JSON.parse(e.data).n as number, id: e.id })),
          published.map((p) => ({ event: 'n', n: p.n, id: p.id })),
          `${user}: ${total} events across ${drops + 1} connections, each once, in order`,
        )
      }

      for (let i = 0; i < ITERATIONS; i += PARALLEL) {
        await Promise.all(range(i, Math.min(i + PARALLEL, ITERATIONS)).map(iteration))
      }
      const stats = s.app.notifier.resumer.stats
      t.equal(stats.resyncs.gone + stats.resyncs.malformed + stats.resyncs.foreign, 0, 'never a resync')
      t.ok(stats.replayed > 0, `events were replayed (${stats.replayed}) over ${reconnects} reconnects`)
      t.comment(`${reconnects} reconnects, ${stats.replayed} events replayed`)
    })
  })
}
