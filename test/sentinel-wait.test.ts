// The replica wait on a real Redis Sentinel setup (PUBLISH_WAIT_REPLICAS,
// PUBLISH_WAIT_TIMEOUT_MS; createPublisher's waitReplicas): 202 only once a
// replica has the event, 503 NOT_REPLICATED with Retry-After short of it (the
// event stored on the master, so a retry with the same Idempotency-Key answers
// the first id and stores nothing twice), and a failover right after a 202
// loses no acknowledged event. The old master, restarted, rejoins as a replica
// and nothing changes for the streams.
import { once } from 'node:events'
import type { EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { createPublisher, NotReplicated } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { startSentinel, type TestSentinel } from './helpers/sentinel.js'
import { type PublishAnswer, postPublish, sentinelInstance } from './helpers/sentinel-scene.js'
import { openStream, type TestStream } from './helpers/sse.js'

const WAIT_MS = 500
/** What a busy machine may add to a bound: this is about "within the bound", not about speed. */
const SLACK = 2500
const WAIT_ENV = { PUBLISH_WAIT_REPLICAS: '1', PUBLISH_WAIT_TIMEOUT_MS: String(WAIT_MS), REDIS_COMMAND_TIMEOUT_MS: '1500' }
const auth = (user: string): Record<string, string> => ({ authorization: `Bearer user-${user}` })
const history = (user: string) => `notifications:history:{${user}}`

const instance = (t: Parameters<typeof build>[0], sen: TestSentinel) => sentinelInstance(t, sen, WAIT_ENV)

interface Answer extends PublishAnswer {
  id: string | undefined
  ms: number
}

async function post(s: Built, body: unknown, key: string): Promise<Answer> {
  const answer = await postPublish(s, body, key)
  return { ...answer, id: answer.ids[0], ms: answer.ended - answer.started }
}

/** Everything the stream got from event `from` on, before an `end` published now. */
async function untilEnd(s: Built, stream: TestStream, user: string, from = 0): Promise<EventSourceMessage[]> {
  const [end] = await s.store({ recipient_id: user, type: 'end' })
  for (let n = from + 1; ; n++) {
    const events = await stream.nextEvents(n)
    if (events.at(-1)?.id === end?.id) return events.slice(from, -1).filter((e) => e.event !== 'end')
  }
}

const pairs = (events: EventSourceMessage[]) => events.map((e) => [e.event, e.event === 'n' ? JSON.parse(e.data).n : undefined, e.id])

t.test('PUBLISH_WAIT_REPLICAS=1: 202 once the replica has it; short of it 503 NOT_REPLICATED, and a retry with the same key answers the first id', async (t) => {
  const sen = await startSentinel(t)
  const a = await instance(t, sen)
  const b = await instance(t, sen)
  const master = await sen.master()
  const replica = sen.servers.find((p) => p !== master) as number
  const alice = await openStream(t, `${a.base}/notify`, auth('alice'))

  const first = await post(a, { recipient_id: 'alice', type: 'n', n: 1 }, 'w-1')
  t.equal(first.status, 202, 'the replica is up: 202')

  sen.pause(replica)
  let paused = true
  t.teardown(() => {
    if (paused) sen.resume(replica)
  })
  const short = await post(a, { recipient_id: 'alice', type: 'n', n: 2 }, 'w-2')
  t.equal(short.status, 503, 'the replica is hung: 503')
  t.equal(short.code, 'NOTIFY_PUBLISH_NOT_REPLICATED')
  t.ok(short.retryAfter !== null && Number(short.retryAfter) >= 1, `with Retry-After (${short.retryAfter})`)
  t.ok(short.ms < WAIT_MS + SLACK, `within the wait (${short.ms.toFixed(0)} ms for ${WAIT_MS} ms)`)

  const publisher = createPublisher({ redis: sen.client({ commandTimeout: 1500, maxRetriesPerRequest: 0 }), waitReplicas: 1, waitTimeoutMs: WAIT_MS })
  const failed = await publisher.publish({ recipient_id: 'alice', type: 'n', n: 3 }, { idempotencyKey: 'p-3' }).then(
    () => undefined,
    (err: unknown) => err,
  )
  t.type(failed, NotReplicated, 'createPublisher: NotReplicated')
  t.match(failed, { wanted: 1, got: 0 })

  // Stored on the master and published (the wait comes after): the stream has them.
  const seen = await alice.nextEvents(3)
  t.same(seen.map((e) => JSON.parse(e.data).n), [1, 2, 3])

  // The other instance, asked the same while the replica still hangs, cannot
  // confirm it either: WAIT counts what its own connection wrote, so the
  // idempotent hit must write too (redis/publish.lua refreshes the marker).
  const elsewhere = await post(b, { recipient_id: 'alice', type: 'n', n: 2 }, 'w-2')
  t.equal(elsewhere.status, 503, 'a retry on the other instance while the replica hangs: still 503')
  t.equal(elsewhere.code, 'NOTIFY_PUBLISH_NOT_REPLICATED')

  sen.resume(replica)
  paused = false
  const retried = await post(a, { recipient_id: 'alice', type: 'n', n: 2 }, 'w-2')
  t.equal(retried.status, 202, 'the replica is back: the retry answers 202')
  t.equal(retried.id, seen[1]?.id, 'with the first id')
  const [again] = await publisher.publish({ recipient_id: 'alice', type: 'n', n: 3 }, { idempotencyKey: 'p-3' })
  t.equal(again?.id, seen[2]?.id, 'createPublisher: the retry resolves with the first id')

  t.same(pairs(await untilEnd(a, alice, 'alice')), pairs(seen), 'the stream got each once')
  t.equal(await sen.node(master).xlen(history('alice')), 4, 'stored once each (and the end)')
})

t.test('with the replica wait on, a failover right after a 202 loses no acknowledged event; the old master rejoins as a replica', async (t) => {
  const sen = await startSentinel(t)
  const a = await instance(t, sen)
  const b = await instance(t, sen)
  const alice = await openStream(t, `${a.base}/notify`, auth('alice'))
  const tab = await openStream(t, `${b.base}/notify`, auth('alice'))
  const transitions: string[] = []
  for (const [name, s] of [['A', a], ['B', b]] as const) {
    for (const what of ['down', 'up']) s.app.notifier.broker.on(what, () => transitions.push(`${name} ${what}`))
  }

  const acked: string[] = []
  for (let n = 1; n <= 6; n++) {
    const r = await post(n % 2 === 0 ? a : b, { recipient_id: 'alice', type: 'n', n }, `f-${n}`)
    t.equal(r.status, 202, `event ${n}: 202`)
    acked.push(r.id as string)
  }
  const cycles = [a, b].map((s) => once(s.app.notifier.broker, 'down').then(() => once(s.app.notifier.broker, 'up', { signal: AbortSignal.timeout(30_000) })))
  const started = performance.now()
  const newMaster = await sen.killMaster()
  t.comment(`failover in ${(performance.now() - started).toFixed(0)} ms`)
  const stored = ((await sen.node(newMaster).xrange(history('alice'), '-', '+')) as [string, string[]][]).map(([id]) => id)
  t.same(stored, acked.map((id) => id.split('.')[0]), 'every acknowledged event is on the new master')
  await Promise.all(cycles)

  // The open streams caught up (nothing to catch up), and a stream that comes
  // back with the second event's id gets the rest from the new master.
  const back = await openStream(t, `${b.base}/notify`, { ...auth('alice'), 'last-event-id': acked[1] as string })
  t.same((await back.nextEvents(4)).map((e) => e.id), acked.slice(2), 'Last-Event-ID: the four after it, from the new master')

  // No replica now: the wait cannot be met, and /publish says so (the event is on the master).
  const alone = await post(a, { recipient_id: 'alice', type: 'n', n: 7 }, 'f-7')
  t.equal(alone.status, 503, 'no replica: 503')
  t.equal(alone.code, 'NOTIFY_PUBLISH_NOT_REPLICATED')
  t.ok(alone.retryAfter)

  const restarting = performance.now()
  const downs = transitions.length
  await sen.restartOld()
  t.comment(`old master back as a replica in ${(performance.now() - restarting).toFixed(0)} ms`)
  t.equal(await sen.master(), newMaster, 'the master stays')
  t.same(transitions.slice(downs), [], 'the service did not notice the old master coming back')
  const retried = await post(a, { recipient_id: 'alice', type: 'n', n: 7 }, 'f-7')
  t.equal(retried.status, 202, 'a replica again: the retry answers 202')

  const want = [...acked, retried.id]
  for (const [name, s, stream] of [['A', a, alice], ['B', b, tab]] as const) {
    const got = await untilEnd(s, stream, 'alice')
    t.same(got.map((e) => e.id), want, `${name}: all seven once, in order, no resync`)
  }
  t.equal(await sen.node(newMaster).xlen(history('alice')), 9, 'stored once each (and two ends)')
  t.comment(`broker: ${transitions.join(', ')}`)
})
