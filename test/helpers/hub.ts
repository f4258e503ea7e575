// Waits for the hub to reach a number of open streams, driven by its own
// open/close events (no polling, no sleeps); makes a stream that stops reading.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import type { Hub } from '../../src/sse/hub.js'
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
 * A raw socket that asks for a stream as `token` and, once the hub has opened
 * it, never reads again: a slow consumer in the making.
 */
export async function openStalled(t: { teardown(fn: () => unknown): void }, s: Built, token: string): Promise<Socket> {
  const stalled = connect(Number(new URL(s.base).port), '127.0.0.1')
  t.teardown(() => stalled.destroy())
  await once(stalled, 'connect')
  const opened = once(s.app.notifier.hub, 'open')
  stalled.write(`GET /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  await opened
  stalled.pause()
  return stalled
}
