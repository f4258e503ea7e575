// The one Redis subscriber connection of the process. ioredis reconnects by
// itself; we resubscribe explicitly on every `ready` (instead of ioredis's
// autoResubscribe) so that "subscribed" is a fact we observed, which is what
// /readyz reports.
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import type { LogLimiter } from '../log-limiter.js'

export interface SubscriberOptions {
  url: string
  channel: string
  logs: LogLimiter
  onMessage: (message: string) => void
  /** A client to use instead of one made from `url` (it will be put in subscriber mode). */
  client?: Redis
}

/** Emits 'up' when the subscription is active and 'down' when it is lost. */
export class RedisSubscriber extends EventEmitter {
  readonly #client: Redis
  #up = false

  constructor(private readonly opts: SubscriberOptions) {
    super()
    this.#client =
      opts.client ??
      new Redis(opts.url, {
        autoResubscribe: false,
        lazyConnect: true,
        // Never give up reconnecting; back off to at most 2 s between tries.
        retryStrategy: (times) => Math.min(times * 100, 2000),
        maxRetriesPerRequest: null,
        connectionName: 'notify-subscriber',
      })
    this.#client.on('ready', this.#subscribe)
    this.#client.on('close', this.#lost)
    this.#client.on('error', (err: Error & { code?: string }) => {
      opts.logs.write('warn', 'redis-error', { err: { message: err.message, code: err.code } }, 'redis subscriber error')
    })
    this.#client.on('message', (_channel: string, message: string) => opts.onMessage(message))
  }

  /** True while the subscription to the channel is active. */
  get up(): boolean {
    return this.#up
  }

  /** Starts connecting; resolves at once (readiness is reported by `up`). */
  start(): void {
    if (this.#client.status === 'wait') this.#client.connect().catch(() => {})
  }

  async close(): Promise<void> {
    // A deliberate close is not an outage: no 'down' event.
    this.#client.removeListener('close', this.#lost)
    this.#up = false
    try {
      await this.#client.quit()
    } catch {
      this.#client.disconnect()
    }
  }

  #subscribe = (): void => {
    this.#client.subscribe(this.opts.channel).then(
      () => this.#set(true),
      (err: Error) => this.opts.logs.write('warn', 'redis-subscribe', { err: { message: err.message } }, 'subscribe failed'),
    )
  }

  #lost = (): void => {
    this.#set(false)
  }

  #set(up: boolean): void {
    if (this.#up === up) return
    this.#up = up
    this.emit(up ? 'up' : 'down')
  }
}
