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
