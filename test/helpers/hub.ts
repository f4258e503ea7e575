// Waits for the hub to reach a number of open streams, driven by its own
// open/close events (no polling, no sleeps); makes a stream that stops reading,
// and one that holds a shutdown drain.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import type { Hub } from '../../src/sse/hub.js'
import type { CloseReason, SseStream } from '../../src/sse/stream.js'
import type { Built } from './app.js'

export function hubSize(hub: Hub, size: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (hub.size !== size) return
      hub.off('open', check)
      hub.off('close', check)
      resolve()
    }
    hub.on('open', check)
    hub.on('close', check)
    check()
  })
}

/**
 * A raw socket that asks for a stream as `token` (with `headers`; no Accept
 * unless given) and, once the hub has opened it, never reads again: a slow
 * consumer in the making.
 */
export async function openStalled(
  t: { teardown(fn: () => unknown): void },
  s: Built,
  token: string,
  headers: Record<string, string> = {},
): Promise<Socket> {
  const stalled = connect(Number(new URL(s.base).port), '127.0.0.1')
  t.teardown(() => stalled.destroy())
  await once(stalled, 'connect')
  const opened = once(s.app.notifier.hub, 'open')
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  stalled.write(`GET /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${extra}\r\n`)
  await opened
  stalled.pause()
  return stalled
}

/**
 * Publishes 15 KB live events for `userId` (Redis broker), in bursts, until the
 * hub closes that user's stream; resolves with why it was closed. Kernel socket
 * buffers absorb several MB first; bounded at 10,000 events.
 */
export async function floodUntilClosed(s: Built, userId: string): Promise<CloseReason> {
  const closed = new Promise<CloseReason>((resolve) => {
    s.app.notifier.hub.on('close', (stream: SseStream, reason: CloseReason) => {
      if (stream.userId === userId) resolve(reason)
    })
  })
  let done = false
  void closed.then(() => (done = true))
  const payload = 'x'.repeat(15_000)
  const publisher = s.redis.client()
  for (let batch = 0; batch < 200 && !done; batch++) {
    const p = publisher.pipeline()
    for (let i = 0; i < 50; i++) p.publish('notifications', JSON.stringify({ recipient_id: userId, payload }))
    await p.exec()
  }
  return closed
}

/**
 * A stream (user `userId`, upstream token `user-<userId>`) whose client has
 * stopped reading, with frames waiting in the service beyond what the socket
 * buffers took: its last frame cannot be flushed, so the service cannot close
 * the connection (it closes a stream's connection once the last frame is out:
 * `Connection: close`), and a shutdown drain waits for it until the grace
 * period ends. Needs the Redis broker, and SSE_MAX_BUFFER_BYTES well above the
 * 150 KB bursts it publishes (e.g. 8388608). Returns the client's socket.
 */
export async function openBacklogged(t: { teardown(fn: () => unknown): void }, s: Built, userId: string): Promise<Socket> {
  const client = await openStalled(t, s, `user-${userId}`)
  const [stream] = s.app.notifier.hub.streamsOf([userId])
  const socket = stream?.socket
  if (stream === undefined || socket == null) throw new Error(`no stream for the stalled client ${userId}`)
  // Loopback socket buffers take a few MB: bursts well below
  // SSE_MAX_BUFFER_BYTES until some of it waits in the service.
  const payload = 'x'.repeat(15_000)
  const publisher = s.redis.client()
  while (socket.writableLength === 0) {
    if (stream.closed) throw new Error('the stalled stream was closed before frames queued up')
    const p = publisher.pipeline()
    for (let i = 0; i < 10; i++) p.publish('notifications', JSON.stringify({ recipient_id: userId, payload }))
    await p.exec()
  }
  return client
}
