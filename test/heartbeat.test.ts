// First bytes, retry hint and heartbeats.
import t from 'tap'
import { build } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

t.test('a stream starts with retry and a comment, then gets heartbeat comments', async (t) => {
  const s = await build(t, { env: { HEARTBEAT_INTERVAL_MS: '40', SSE_RETRY_MS: '1234' } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  t.match(stream.raw(), /^retry: 1234\n\n: connected\n\n/, 'first bytes, sent before any event')
  t.same(stream.retry, [1234])
  const comments = await stream.nextComments(4)
  t.same(comments, ['connected', '', '', ''])
  t.equal(stream.events.length, 0, 'heartbeats dispatch no event')
})

t.test('every stream gets each heartbeat', async (t) => {
  const s = await build(t, { env: { HEARTBEAT_INTERVAL_MS: '30' } })
  const streams = await Promise.all(
    Array.from({ length: 20 }, (_, i) => openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${i}` })),
  )
  await Promise.all(streams.map((st) => st.nextComments(3)))
  for (const st of streams) t.ok(st.comments.length >= 3)
})

t.test('a stream that keeps receiving events gets no heartbeat; an idle one does', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { HEARTBEAT_INTERVAL_MS: '200' } })
  const busy = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-busy' })
  const idle = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-idle' })
  // An event every 50 ms (a workload, not a wait) until the idle stream has had 5 heartbeats.
  let n = 0
  const timer = setInterval(() => void s.store({ recipient_id: 'busy', n: n++ }), 50)
  await idle.nextComments(6) // `connected` and 5 heartbeats: about a second
  clearInterval(timer)
  const beats = busy.comments.filter((c) => c === '').length
  t.ok(n >= 10, `the busy stream got events meanwhile (${n})`)
  t.ok(beats <= 1, `at most one heartbeat before its first event (got ${beats})`)
})

t.test('streams leave their heartbeat group when they close; the others keep beating', async (t) => {
  const s = await build(t, { env: { HEARTBEAT_INTERVAL_MS: '64' } })
  const hub = s.app.notifier.hub
  const streams = await Promise.all(
    Array.from({ length: 70 }, (_, i) => openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${i}` })),
  )
  t.equal(hub.beating, 70, 'every open stream is in a group (70 streams, 64 groups)')
  const closed = new Promise((resolve) => {
    let n = 0
    hub.on('close', () => ++n === 69 && resolve(n))
  })
  for (const st of streams.slice(1)) st.close()
  await closed
  t.equal(hub.beating, 1, 'closed streams left their groups')
  const last = streams[0]
  if (last === undefined) throw new Error('no stream')
  const before = last.comments.length
  await last.nextComments(before + 2)
  t.ok(last.comments.length >= before + 2, 'the remaining stream still gets heartbeats')
})
