// Waits for the hub to reach a number of open streams, driven by its own
// open/close events (no polling, no sleeps).
import type { Hub } from '../../src/sse/hub.js'

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
