// Bad channel input is dropped, counted and logged with a rate limit; it never
// reaches a client and never stops delivery.
import t from 'tap'
import { build } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

const BAD: Array<[string, string]> = [
  ['not json at all', 'not_json'],
  ['{"recipient_id":"1"', 'not_json'],
  ['[1,2,3]', 'not_object'],
  ['"a string"', 'not_object'],
  ['{"type":"x"}', 'bad_recipient'],
  ['{"recipient_id":{"nested":true}}', 'bad_recipient'],
  ['{"recipient_id":["1"]}', 'bad_recipient'],
  ['{"recipient_id":1.25}', 'bad_recipient'],
  ['{"recipient_id":"1","type":"bad type"}', 'bad_type'],
  ['{"recipient_id":"1","type":"x\\ndata: {\\"forged\\":true}"}', 'bad_type'],
  ['{"recipient_id":"1","type":"x\\r\\nevent: forged"}', 'bad_type'],
  ['{"recipient_id":"1","type":"resync"}', 'reserved_type'],
]

t.test('each kind of bad input is dropped and the next good event still arrives', async (t) => {
  const s = await build(t, { env: { MAX_EVENT_BYTES: '4096' } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  const cases = [...BAD, [JSON.stringify({ recipient_id: '1', pad: 'x'.repeat(5000) }), 'too_large'] as [string, string]]
  let n = 0
  for (const [raw, reason] of cases) {
    const before = s.app.notifier.ingest.stats.dropped[reason as 'not_json']
    await s.publish(raw)
    await s.publish({ recipient_id: '1', type: 'good', n: ++n })
    const events = await stream.nextEvents(n)
    t.same(JSON.parse(events[n - 1]?.data ?? '{}'), { recipient_id: '1', type: 'good', n }, `good event after ${reason}`)
    t.equal(s.app.notifier.ingest.stats.dropped[reason as 'not_json'], before + 1, `${reason} counted`)
  }
  t.equal(stream.events.length, cases.length, 'no bad input reached the client')
  t.ok(stream.events.every((e) => e.event === 'good'))
  t.notMatch(stream.raw(), /forged/)
  t.equal(s.app.notifier.ingest.stats.received, cases.length * 2)
})

t.test('a flood of bad input is logged a few times, not once per message', async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  const publisher = s.redis.client()
  const pipeline = publisher.pipeline()
  for (let i = 0; i < 2000; i++) pipeline.publish('notifications', `garbage ${i}`)
  await pipeline.exec()
  await s.publish({ recipient_id: '1', type: 'after-flood' })
  const [e] = await stream.nextEvents(1)
  t.equal(e?.event, 'after-flood')
  t.equal(s.app.notifier.ingest.stats.dropped.not_json, 2000)
  const dropLogs = s.logs.filter((l) => l.msg === 'dropped a channel message')
  t.ok(dropLogs.length >= 1 && dropLogs.length <= 2, `logged ${dropLogs.length} times for 2000 drops`)
  t.notMatch(s.rawLogs(), /garbage 1/, 'the dropped message itself is not logged')
})

t.test('events on other channels are ignored', async (t) => {
  const s = await build(t, { env: { NOTIFY_CHANNEL: 'team-a' } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  const publisher = s.redis.client()
  await publisher.publish('notifications', JSON.stringify({ recipient_id: '1', type: 'wrong-channel' }))
  await publisher.publish('team-a', JSON.stringify({ recipient_id: '1', type: 'right-channel' }))
  const [e] = await stream.nextEvents(1)
  t.equal(e?.event, 'right-channel')
  t.equal(s.app.notifier.ingest.stats.received, 1)
})
