// A client that does not read is closed once its unsent bytes pass
// SSE_MAX_BUFFER_BYTES; other users are not affected.
import t from 'tap'
import { build } from './helpers/app.js'
import { floodUntilClosed, openStalled } from './helpers/hub.js'
import { openStream } from './helpers/sse.js'

t.test('a stalled reader is disconnected; a healthy one keeps receiving', async (t) => {
  const s = await build(t, { env: { SSE_MAX_BUFFER_BYTES: '65536', MAX_EVENT_BYTES: '16384' } })
  const healthy = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-fast' })

  // A raw socket that sends its request and then never reads.
  await openStalled(t, s, 'user-slow')

  t.equal(await floodUntilClosed(s, 'slow'), 'slow')
  t.equal(s.app.notifier.hub.stats.closed.slow, 1)

  await s.publish({ recipient_id: 'fast', type: 'still-fine' })
  const [e] = await healthy.nextEvents(1)
  t.equal(e?.event, 'still-fine')
  t.equal(s.app.notifier.hub.size, 1, 'only the healthy stream remains')
})
