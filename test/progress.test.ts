// The two publish controls for progress streams, on both brokers, through
// POST /publish, the app's publisher and createPublisher: `live_only` events
// reach open streams but take no history slot; events with a `collapse_key`
// replace the recipient's last stored one with that key, so real
// notifications stay in the history, and a stream that comes back (from
// before the job, or from a progress id since replaced) gets the latest
// progress only, without a wrong `resync`.
import t from 'tap'
import { createPublisher } from '../src/publisher.js'
import type { MemoryBroker } from '../src/broker/memory-broker.js'
import { START } from '../src/history/event-id.js'
import { type Built, build } from './helpers/app.js'
import { openStream, type TestStream } from './helpers/sse.js'

const TOKEN = 'publish-token-0123456789abcdef'
const alice = { authorization: 'Bearer user-alice' }

async function post(s: Built, body: unknown, key?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }
  if (key !== undefined) headers['idempotency-key'] = key
  const res = await fetch(`${s.base}/publish`, { method: 'POST', headers, body: JSON.stringify(body) })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const ids = (answer: { json: Record<string, unknown> }) => (answer.json.published as { id: string | null }[]).map((p) => p.id)

/** The types of the stored events of a user, oldest first. */
async function history(s: Built, user: string): Promise<string[]> {
  if (s.broker === 'redis') {
    const entries = (await s.redis.client().xrange(`notifications:history:{${user}}`, '-', '+')) as [string, string[]][]
    return entries.map(([, f]) => f[1] as string)
  }
  const range = (s.app.notifier.broker as MemoryBroker).history.read(user, START).range
  return range.map((e) => /^event: (.*)$/m.exec(e.frame.toString())?.[1] ?? '')
}

/**
 * What the stream got from event `from` on, up to a sentinel stored now
 * (proves nothing else is on its way), sentinels left out.
 */
async function untilSentinel(s: Built, stream: TestStream, from = stream.events.length) {
  const [sentinel] = await s.store({ recipient_id: 'alice', type: 'sentinel' })
  for (let n = from + 1; ; n++) {
    const events = await stream.nextEvents(n)
    if (events.at(-1)?.id === sentinel?.id) return events.slice(from, -1).filter((e) => e.event !== 'sentinel')
  }
}

const resumed = (s: Built, id: string) => openStream(t, `${s.base}/notify`, { ...alice, 'last-event-id': id })

for (const broker of ['redis', 'embedded'] as const) {
  t.test(`${broker}: live_only events reach the open streams without an id and take no history slot`, async (t) => {
    const s = await build(t, { broker, env: { PUBLISH_TOKEN: TOKEN, HISTORY_SIZE: '3' } })
    const stream = await openStream(t, `${s.base}/notify`, alice)
    const real = await post(s, [1, 2, 3].map((n) => ({ recipient_id: 'alice', type: 'n', n })))
    const ticks = await post(s, Array.from({ length: 10 }, (_, p) => ({ recipient_id: 'alice', type: 'tick', live_only: true, p })))
    t.equal(ticks.status, 202)
    t.same(ids(ticks), Array(10).fill(null), 'no ids: nothing stored')
    const viaPublisher = await s.app.notifier.publisher.publish({ recipient_id: 'alice', type: 'tick', live_only: true, p: 10 })
    t.same(viaPublisher.map((p) => p.id), [null], 'the in-process publisher alike')
    const got = await untilSentinel(s, stream, 0)
    t.same(got.map((e) => e.event), ['n', 'n', 'n', ...Array(11).fill('tick')], 'all delivered live, in order')
    t.same(got.filter((e) => e.event === 'tick').map((e) => e.id), Array(11).fill(undefined), 'the ticks without id')
    t.same(JSON.parse(got[3]?.data ?? ''), { recipient_id: 'alice', type: 'tick', live_only: true, p: 0 }, 'data: the event as published')
    t.same(await history(s, 'alice'), ['n', 'n', 'sentinel'], 'the history still holds the real events (trimmed by the sentinel only)')

    const back = await resumed(s, ids(real)[1] as string)
    t.same((await untilSentinel(s, back, 0)).map((e) => e.event), ['n'], 'a stream that comes back: real events only, no resync')
  })

  t.test(`${broker}: a collapse_key keeps one entry per key; coming back gets the latest, from before or from a replaced id`, async (t) => {
    const s = await build(t, { broker, env: { PUBLISH_TOKEN: TOKEN, HISTORY_SIZE: '6' } })
    const stream = await openStream(t, `${s.base}/notify`, alice)
    const [first] = ids(await post(s, { recipient_id: 'alice', type: 'n', n: 1 }))
    const progress: string[] = []
    for (let p = 0; p <= 100; p += 10) {
      const answer = await post(s, { recipient_id: 'alice', type: 'job.progress', collapse_key: 'job:17', p })
      t.equal(answer.status, 202)
      progress.push(ids(answer)[0] as string)
    }
    const [second] = ids(await post(s, { recipient_id: 'alice', type: 'n', n: 2 }))
    t.same(await history(s, 'alice'), ['n', 'job.progress', 'n'], '11 progress events took one slot: the real ones stay')
    const live = await untilSentinel(s, stream, 0)
    t.same(live.map((e) => e.id), [first, ...progress, second], 'the open stream got every one of them live, with its id')

    const fromBefore = await resumed(s, first as string)
    const replayed = await untilSentinel(s, fromBefore, 0)
    t.same(replayed.map((e) => e.id), [progress.at(-1), second], 'from before the job: the latest progress only')
    t.same(JSON.parse(replayed[0]?.data ?? '').p, 100)
    t.same(fromBefore.events.filter((e) => e.event === 'resync'), [], 'no resync')

    const fromReplaced = await resumed(s, progress[3] as string)
    t.same((await untilSentinel(s, fromReplaced, 0)).map((e) => e.id), [progress.at(-1), second], 'from a replaced progress id: the same, no resync')

    // A second job: its own key, its own entry; the first job's latest stays.
    for (let p = 0; p <= 20; p += 10) await s.store({ recipient_id: 'alice', type: 'job.progress', collapse_key: 'job:18', p })
    t.same(await history(s, 'alice'), ['job.progress', 'n', 'sentinel', 'sentinel', 'sentinel', 'job.progress'], 'three sentinels, one entry per job')

    // Events after a replaced id trimmed: that stream has a gap, and is told.
    for (let n = 3; n <= 4; n++) await s.store({ recipient_id: 'alice', type: 'n', n })
    const late = await resumed(s, progress[3] as string)
    const [told] = await late.nextEvents(1)
    t.equal(told?.event, 'resync', 'something after it was trimmed: resync')
  })

  t.test(`${broker}: bad controls are a 400 naming the event and the field; nothing of the batch is published`, async (t) => {
    const s = await build(t, { broker, env: { PUBLISH_TOKEN: TOKEN } })
    const good = { recipient_id: 'alice', type: 'job.progress' }
    const cases: [string, Record<string, unknown>, string, RegExp][] = [
      ['live_only not a boolean', { ...good, live_only: 'yes' }, 'live_only', /must be true or false/],
      ['collapse_key a number', { ...good, collapse_key: 17 }, 'collapse_key', /\^\[A-Za-z0-9_\.:-\]\{1,128\}\$/],
      ['collapse_key empty', { ...good, collapse_key: '' }, 'collapse_key', /must match/],
      ['collapse_key too long', { ...good, collapse_key: 'k'.repeat(129) }, 'collapse_key', /must match/],
      ['collapse_key with a space', { ...good, collapse_key: 'job 17' }, 'collapse_key', /must match/],
      ['collapse_key with a brace', { ...good, collapse_key: '{job}' }, 'collapse_key', /must match/],
      ['both', { ...good, live_only: true, collapse_key: 'job' }, 'collapse_key', /live_only event is not stored/],
      ['a reserved type, live', { ...good, type: 'resync', live_only: true }, 'type', /reserved/],
    ]
    for (const [name, event, field, message] of cases) {
      const answer = await post(s, [good, event])
      t.equal(answer.status, 400, name)
      t.match(answer.json, { code: 'NOTIFY_INVALID_EVENT', event: 1, field, message }, name)
    }
    t.same(await history(s, 'alice'), [], 'nothing stored')
    t.equal((await post(s, { ...good, live_only: false, collapse_key: 'A_b-9.x:y'.padEnd(128, 'z') })).status, 202, 'the limits themselves')
    await t.rejects(s.app.notifier.publisher.publish({ ...good, collapse_key: 'job 17' }), { code: 'NOTIFY_INVALID_EVENT', details: { field: 'collapse_key' } })
  })

  t.test(`${broker}: an Idempotency-Key on a live_only event: the retry delivers nothing; changed controls conflict`, async (t) => {
    const s = await build(t, { broker, env: { PUBLISH_TOKEN: TOKEN } })
    const stream = await openStream(t, `${s.base}/notify`, alice)
    const tick = { recipient_id: 'alice', type: 'tick', live_only: true, p: 50 }
    const first = await post(s, tick, '"tick-50"')
    const again = await post(s, tick, '"tick-50"')
    t.equal(again.status, 202)
    t.same(again.json, { published: [{ ...(first.json.published as object[])[0], live: null, instances: null }] }, 'answered as the first: no id')
    t.same((await untilSentinel(s, stream, 0)).map((e) => e.event), ['tick'], 'delivered once')
    const stored = await post(s, { ...tick, live_only: false }, '"tick-50"')
    t.equal(stored.status, 422, 'the same key for the same event, stored this time: another publish')
    const keyed = await post(s, { recipient_id: 'alice', type: 'p', collapse_key: 'job' }, '"p-1"')
    t.same(ids(await post(s, { recipient_id: 'alice', type: 'p', collapse_key: 'job' }, '"p-1"')), ids(keyed), 'a collapsing retry: the first id')
    t.equal((await post(s, { recipient_id: 'alice', type: 'p', collapse_key: 'job2' }, '"p-1"')).status, 422, 'another collapse key conflicts')
  })
}

t.test('createPublisher: the controls through the script, read back by the service', async (t) => {
  const s = await build(t)
  const notify = createPublisher({ redis: s.redis.client() })
  const stream = await openStream(t, `${s.base}/notify`, alice)
  const [before] = await notify.publish({ recipient_id: 'alice', type: 'n' })
  const steps = []
  for (let p = 0; p <= 100; p += 25) steps.push(...(await notify.publish({ recipient_id: 'alice', type: 'job.progress', collapse_key: 'export', p })))
  t.same((await notify.publish({ recipient_id: 'alice', type: 'tick', live_only: true })).map((p) => p.id), [null])
  t.same(await history(s, 'alice'), ['n', 'job.progress'])
  t.same((await untilSentinel(s, stream, 0)).map((e) => e.event), ['n', ...Array(5).fill('job.progress'), 'tick'])
  const back = await resumed(s, steps[1]?.id as string)
  t.same((await untilSentinel(s, back, 0)).map((e) => e.id), [steps.at(-1)?.id], 'from a replaced id: the latest')
  t.not(before?.id, null)
})
