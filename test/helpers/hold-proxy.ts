// A TCP proxy in front of a real Redis that can hold up one kind of the
// service's connections: what those clients send is kept back (the server
// hears nothing from them) until released, while every other connection flows.
// A slow or congested link, made on purpose: it lets a test put an event in
// the gap between two of the service's Redis calls on different connections.
// Connections are told apart by the name ioredis gives them (connectionName,
// sent in the handshake: notify-subscriber, notify-commands).
import { EventEmitter, once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface HoldProxy {
  /** redis://127.0.0.1:<proxy port> */
  url: string
  /** From now on, hold what connections named `name` send (already open ones included). */
  hold(name: string): void
  /** Sends what was held, in order, and lets everything flow again. */
  release(): void
  /** Bytes held so far. */
  held(): number
  /** Resolves once something is held (the command the test wants to hold up was sent). */
  somethingHeld(): Promise<void>
}

interface Pair {
  client: Socket
  server: Socket
  /** The handshake so far, until a name was seen in it. */
  head: string
  name: string | undefined
  queue: Buffer[]
}

export async function startHoldProxy(t: Teardown, redisPort: number, names: readonly string[]): Promise<HoldProxy> {
  const pairs = new Set<Pair>()
  let holding: string | undefined
  const events = new EventEmitter()
  const heldBytes = () => [...pairs].reduce((n, p) => n + p.queue.reduce((m, b) => m + b.length, 0), 0)
  const proxy = createServer((client) => {
    const server = connect(redisPort, '127.0.0.1')
    const pair: Pair = { client, server, head: '', name: undefined, queue: [] }
    pairs.add(pair)
    client.on('data', (chunk: Buffer) => {
      if (pair.name === undefined && pair.head.length < 4096) {
        pair.head += chunk.toString('latin1')
        pair.name = names.find((n) => pair.head.includes(n))
      }
      if (holding !== undefined && pair.name === holding) {
        pair.queue.push(chunk)
        events.emit('held')
      } else server.write(chunk)
    })
    server.on('data', (chunk: Buffer) => client.write(chunk))
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      server.destroy()
    }
    client.on('close', end)
    server.on('close', end)
    client.on('error', end)
    server.on('error', end)
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  t.teardown(async () => {
    for (const p of pairs) {
      p.client.destroy()
      p.server.destroy()
    }
    proxy.close()
  })
  const port = (proxy.address() as { port: number }).port
  return {
    url: `redis://127.0.0.1:${port}`,
    hold: (name) => {
      holding = name
    },
    release: () => {
      holding = undefined
      for (const p of pairs) {
        for (const chunk of p.queue) p.server.write(chunk)
        p.queue = []
      }
    },
    held: heldBytes,
    somethingHeld: async () => {
      if (heldBytes() === 0) await once(events, 'held')
    },
  }
}
