// Connections that never sent a request. Browsers open spare connections in
// advance and may leave them unused; Node counts such a socket neither idle nor
// active, so closeIdleConnections() leaves it and server.close() waits for it
// until REQUEST_TIMEOUT_MS, past the shutdown budget. Tracked only until the
// first request: an open stream carries no extra listener.
import type { Server } from 'node:http'
import type { Socket } from 'node:net'

export interface UnusedConnections {
  /** Destroys every connection that has not sent a request yet. */
  destroy(): void
}

export function trackUnusedConnections(server: Server): UnusedConnections {
  const unused = new Set<Socket>()
  // One shared listener (called with the socket as `this`), not a closure per connection.
  function forget(this: Socket): void {
    unused.delete(this)
  }
  server.on('connection', (socket: Socket) => {
    unused.add(socket)
    socket.once('close', forget)
  })
  server.on('request', (request: { socket: Socket }) => {
    const socket = request.socket
    if (unused.delete(socket)) socket.off('close', forget)
  })
  return {
    destroy() {
      for (const socket of unused) socket.destroy()
      unused.clear()
    },
  }
}
