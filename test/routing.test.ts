// Routing: each event reaches exactly the streams of its recipient.
import t from 'tap'
import { build } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { openStream } from './helpers/sse.js'

t.test('events reach every tab of their recipient and nobody else', async (t) => {
  const s = await build(t)
  const url = `${s.base}/notify`
  const alice1 = await openStream(t, url, { authorization: 'Bearer user-alice' })
  const alice2 = await openStream(t, url, { authorization: 'Bearer user-alice' })
  const bob = await openStream(t, url, { authorization: 'Bearer user-bob' })
  t.equal(s.app.notifier.hub.size, 3)
  t.equal(s.app.notifier.hub.users, 2)

  await s.publish({ recipient_id: 'alice', type: 'order.shipped', order: 'A-17' })
  await s.publish({ recipient_id: 'bob', type: 'comment.liked', n: 1 })
  // A marker for alice, published last: once it arrives, everything before it
  // has been routed, so bob's count below is final.
  await s.publish({ recipient_id: 'alice', type: 'marker' })

  for (const tab of [alice1, alice2]) {
    const [first, second] = await tab.nextEvents(2)
    t.equal(first?.event, 'order.shipped')
    t.same(JSON.parse(first?.data ?? ''), { recipient_id: 'alice', type: 'order.shipped', order: 'A-17' })
    t.equal(second?.event, 'marker')
  }
  const [b] = await bob.nextEvents(1)
  t.equal(b?.event, 'comment.liked')
  t.equal(bob.events.length, 1, 'bob got only his own event')
  t.equal(alice1.events.length, 2, 'alice got only her own events')
})

t.test('numeric and string recipient ids are the same user', async (t) => {
  const s = await build(t)
  const url = `${s.base}/notify`
  const numeric = await openStream(t, url, { authorization: 'Bearer num-42' }) // upstream answers user_id: 42
  const text = await openStream(t, url, { authorization: 'Bearer user-42' })
  await s.publish({ recipient_id: 42, type: 'a' })
  await s.publish({ recipient_id: '42', type: 'b' })
  for (const stream of [numeric, text]) {
    const evs = await stream.nextEvents(2)
    t.same(evs.map((e) => e.event), ['a', 'b'])
  }
})

t.test('an event without type is a plain message; data is one line of JSON', async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  await s.publish('{\n  "recipient_id": "1",\n  "text": "two\\nlines"\n}')
  const [e] = await stream.nextEvents(1)
  t.equal(e?.event, undefined)
  t.same(JSON.parse(e?.data ?? ''), { recipient_id: '1', text: 'two\nlines' })
  t.notMatch(stream.raw(), /"recipient_id": "1"/, 'pretty-printed input is re-serialised to one line')
})

t.test('a 64 KiB payload is delivered intact', async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-big' })
  const blob = 'é'.repeat(16 * 1024) + 'x'.repeat(32 * 1024) + '\u2028' + '😀'.repeat(100)
  await s.publish({ recipient_id: 'big', type: 'big', blob })
  const [e] = await stream.nextEvents(1)
  t.equal(JSON.parse(e?.data ?? '').blob, blob)
})

t.test('multi-recipient events reach each named user once', async (t) => {
  const s = await build(t)
  const url = `${s.base}/notify`
  const a = await openStream(t, url, { authorization: 'Bearer user-a' })
  const b = await openStream(t, url, { authorization: 'Bearer user-b' })
  const c = await openStream(t, url, { authorization: 'Bearer user-c' })
  await s.publish({ recipient_ids: ['a', 'b', 'b'], type: 'both' })
  await s.publish({ recipient_ids: ['c', 'a'], type: 'end' })
  t.same((await a.nextEvents(2)).map((e) => e.event), ['both', 'end'])
  t.same((await c.nextEvents(1)).map((e) => e.event), ['end'])
  t.same((await b.nextEvents(1)).map((e) => e.event), ['both'])
  t.equal(b.events.length, 1, 'a duplicated id does not deliver twice')
})

t.test('disconnects leave the index empty', async (t) => {
  const s = await build(t)
  const hub = s.app.notifier.hub
  const rounds = 5
  const perRound = 200
  for (let r = 0; r < rounds; r++) {
    const streams = await Promise.all(
      Array.from({ length: perRound }, (_, i) => openStream(t, `${s.base}/notify`, { authorization: `Bearer user-u${i % 50}` })),
    )
    t.equal(hub.size, perRound)
    for (const st of streams) st.close()
    await hubSize(hub, 0)
    t.equal(hub.size, 0, `round ${r}: no stream left`)
    t.equal(hub.users, 0, `round ${r}: no user left`)
  }
  t.equal(hub.stats.closed.client, rounds * perRound)
})
