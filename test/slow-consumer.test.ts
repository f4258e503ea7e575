// A client that does not read is closed once its unsent bytes pass
// SSE_MAX_BUFFER_BYTES; other users are not affected.
import t from 'tap'
import type { SseStream } from '../src/sse/stream.js'
import { build } from './helpers/app.js'
import { openStalled } from './helpers/hub.js'
import { openStream } from './helpers/sse.js'

t.test('a stalled reader is disconnected; a healthy one keeps receiving', async (t) => {
  const s = await build(t, { env: { SSE_MAX_BUFFER_BYTES: '65536', MAX_EVENT_BYTES: '16384' } })
  const healthy = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-fast' })

  // A raw socket that sends its request and then never reads.
  await openStalled(t, s, 'user-slow')

  const closed = new Promise<string>((resolve) => {
    s.app.notifier.hub.on('close', (stream: SseStream, reason: string) => {
      if (stream.userId === 'slow') resolve(reason)
    })
  })
  let done = false
  void closed.then(() => (done = true))
  const payload = 'x'.repeat(15_000)
  const publisher = s.redis.client()
  // Kernel socket buffers absorb several MB first; publish until the server gives up (bounded).
  for (let batch = 0; batch < 200 && !done; batch++) {
    const p = publisher.pipeline()
    for (let i = 0; i < 50; i++) p.publish('notifications', JSON.stringify({ recipient_id: 'slow', payload }))
    await p.exec()
  }
  t.equal(await closed, 'slow')
  t.equal(s.app.notifier.hub.stats.closed.slow, 1)

  await s.publish({ recipient_id: 'fast', type: 'still-fine' })
  const [e] = await healthy.nextEvents(1)
  t.equal(e?.event, 'still-fine')
  t.equal(s.app.notifier.hub.size, 1, 'only the healthy stream remains')
})
