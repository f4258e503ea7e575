// Listens on a free loopback port and closes the server (and its kept-alive
// connections) at the test's end; and whether something listens on a port.
import { once } from 'node:events'
import type { Server } from 'node:http'
import { connect } from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Resolves with the port. */
export async function listenLoopback(t: Teardown, server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => closeServer(server))
  return (server.address() as { port: number }).port
}

/** Closes a listening server at once, kept-alive connections included; a no-op when it is not listening. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return
  server.closeAllConnections()
  server.close()
  await once(server, 'close')
}

/** Whether a TCP connect to 127.0.0.1:`port` succeeds (the socket is closed again at once). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
