// One subscriber connection: to the Redis server (single, Sentinel master) or
// to one Cluster master. ioredis reconnects it; the owner (subscriptions.ts)
// resubscribes on every `ready`, so "subscribed" is always something a server
// confirmed. A ping keeps it honest: a node that hangs with its connections
// open answers nothing, and ioredis's socketTimeout then drops the connection.
import { EventEmitter } from 'node:events'
import type { Redis, RedisOptions } from 'ioredis'
import type { LogLimiter } from '../log-limiter.js'
import { closeClient, createSubscriber, restartWhenEnded } from './redis-clients.js'

/**
 * Emits 'ready' (connected; no subscription yet), 'lost' (the connection and
 * every subscription on it are gone), 'moved' (the node no longer serves some
 * channel's slot), and 'message' (channel, message, sharded).
 */
export class SubscriberLink extends EventEmitter {
  readonly #redis: Redis
  readonly #ping: NodeJS.Timeout
  #ready = false
  #closed = false

  constructor(
    /** Which node: `host:port`, or `main` for a single server or Sentinel master. */
    readonly node: string,
    options: RedisOptions & { url?: string },
    private readonly pingMs: number,
    private readonly logs: LogLimiter,
  ) {
    super()
    this.#redis = createSubscriber(options)
    this.#redis.on('ready', this.#onReady)
    this.#redis.on('close', this.#onClose)
    this.#redis.on('error', this.#onError)
    restartWhenEnded(this.#redis, () => this.#closed)
    // ioredis 6: a MOVED answer to SSUBSCRIBE, or an unasked-for sunsubscribe
    // (the slot left this node: a migration or a failover).
    this.#redis.on('moved', () => this.emit('moved'))
    this.#redis.on('message', (channel: string, message: string) => this.emit('message', channel, message, false))
    this.#redis.on('smessage', (channel: string, message: string) => this.emit('message', channel, message, true))
    this.#ping = setInterval(() => {
      if (this.#ready) this.#redis.ping().catch(() => {})
    }, pingMs).unref()
  }

  get ready(): boolean {
    return this.#ready
  }

  start(): void {
    if (this.#redis.status === 'wait') this.#redis.connect().catch(() => {})
  }

  subscribe(channel: string): Promise<unknown> {
    return this.#redis.subscribe(channel)
  }

  /** Resolves once the server confirmed every channel. All in one slot on a Cluster. */
  ssubscribe(channels: string[]): Promise<unknown> {
    return this.#redis.ssubscribe(...channels)
  }

  sunsubscribe(channels: string[]): Promise<unknown> {
    return this.#redis.sunsubscribe(...channels)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#ready = false
    clearInterval(this.#ping)
    this.#redis.removeListener('close', this.#onClose)
    await closeClient(this.#redis, this.pingMs)
  }

  #onReady = (): void => {
    this.#ready = true
    this.emit('ready')
  }

  #onClose = (): void => {
    const was = this.#ready
    this.#ready = false
    if (was) this.emit('lost')
  }

  #onError = (err: Error & { code?: string }): void => {
    this.logs.write('warn', `redis-subscriber-error:${this.node}`, { node: this.node, err: { message: err.message, code: err.code } }, 'redis subscriber error')
  }
}
