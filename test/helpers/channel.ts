// A subscriber that collects what arrives on one pub/sub channel, in order.
import type { Redis } from 'ioredis'

export interface ChannelLog {
  messages: string[]
  /** Resolves with the first n messages once they have arrived. */
  next(n: number): Promise<string[]>
}

/** `client` must be a connection of its own: it goes into subscriber mode. */
export async function subscribeChannel(client: Redis, name: string): Promise<ChannelLog> {
  const messages: string[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  client.on('message', (ch: string, message: string) => {
    if (ch !== name) return
    messages.push(message)
    for (const w of waiters.filter((w) => messages.length >= w.n)) w.resolve()
  })
  await client.subscribe(name)
  return {
    messages,
    next: async (n) => {
      if (messages.length < n) await new Promise<void>((resolve) => waiters.push({ n, resolve }))
      return messages.slice(0, n)
    },
  }
}
