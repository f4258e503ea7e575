// Listens on a free loopback port and closes the server (and its kept-alive
// connections) at the test's end.
import { once } from 'node:events'
import type { Server } from 'node:http'

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
