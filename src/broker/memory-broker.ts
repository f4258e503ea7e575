// The embedded broker: no Redis, one instance. Publishing stores the event in
// memory (when history is on) and hands it straight to the sink, framed once.
import { EventEmitter } from 'node:events'
import type { HistoryRead, ReadRequest } from '../history/replay.js'
import { encodeEvent } from '../sse/frame.js'
import { TtlCache } from '../auth/ttl-cache.js'
import { type Broker, BrokerUnavailable, type Delivery, fingerprint, IdempotencyConflict, type LiveSink, type Presence, type PublishItem, type PublishOptions } from './broker.js'
import { MemoryHistory } from './memory-history.js'

/** Idempotency keys remembered at most; the oldest go first. */
const IDEMPOTENCY_ENTRIES = 100_000

export interface MemoryBrokerOptions {
  historySize: number
  historyTtlS: number
  /** Bound on the memory the history may hold, in bytes. */
  historyMaxBytes: number
  /** Seconds an idempotency key is remembered. */
  idempotencyTtlS: number
  sink: LiveSink
  /** Open streams of a user in this process (the hub): whether an event was delivered live, and presence. */
  streamsOf: (user: string) => number
  now?: () => number
}

export class MemoryBroker extends EventEmitter implements Broker {
  readonly kind = 'embedded'
  readonly history: MemoryHistory
  /** `<key>:<event>` + recipient -> the first publish's content (its fingerprint) and id. */
  readonly #published: TtlCache<{ content: string; id: string | null }>
  #up = false

  constructor(private readonly opts: MemoryBrokerOptions) {
    super()
    this.history = new MemoryHistory({
      size: opts.historySize,
      ttlMs: opts.historyTtlS * 1000,
      maxBytes: opts.historyMaxBytes,
      now: opts.now,
    })
    this.#published = new TtlCache(IDEMPOTENCY_ENTRIES, opts.now)
  }

  get up(): boolean {
    return this.#up
  }

  start(): void {
    if (this.#up) return
    this.#up = true
    this.emit('up')
    this.emit('regained', null)
  }

  live(): boolean {
    return this.#up
  }

  async close(): Promise<void> {
    this.#up = false
    this.history.clear()
  }

  // Live events are handed to the sink in this process: nothing to subscribe to.
  async attach(): Promise<void> {}

  detach(): void {}

  async read({ recipient, from }: ReadRequest): Promise<HistoryRead> {
    return this.history.read(recipient, from)
  }

  async presence(users: readonly string[]): Promise<Presence[]> {
    if (!this.#up) throw new BrokerUnavailable('broker closed')
    return users.map((user) => {
      const online = this.opts.streamsOf(user) > 0
      return { online, instances: online ? 1 : 0 }
    })
  }

  async publish(items: readonly PublishItem[], options: PublishOptions = {}): Promise<Delivery[]> {
    if (!this.#up) throw new BrokerUnavailable('broker closed')
    const key = options.idempotencyKey
    if (key === undefined) return items.map((item) => this.#store(item))
    const markers = items.map((item) => `${key}:${item.event}\n${item.recipient}`)
    const firsts = markers.map((marker) => this.#published.get(marker))
    // A key reused for other events is refused before anything is published.
    items.forEach((item, i) => {
      const first = firsts[i]
      if (first !== undefined && first.content !== fingerprint(item)) {
        throw new IdempotencyConflict('this idempotency key was used for another event')
      }
    })
    return items.map((item, i) => {
      const first = firsts[i]
      // A retry delivers nothing: whether the first call reached anyone is not kept.
      if (first !== undefined) return { id: first.id, live: null, instances: null }
      const delivery = this.#store(item)
      this.#published.set(markers[i] as string, { content: fingerprint(item), id: delivery.id }, this.opts.idempotencyTtlS * 1000)
      return delivery
    })
  }

  #store({ recipient, type, data, liveOnly, collapseKey }: PublishItem): Delivery {
    const live = this.opts.streamsOf(recipient) > 0
    const delivered = { live, instances: live ? 1 : 0 }
    if (this.opts.historySize === 0 || liveOnly === true) {
      this.opts.sink.stored(recipient, undefined, Buffer.from(encodeEvent(type === undefined ? { data } : { event: type, data })))
      return { id: null, ...delivered }
    }
    const event = this.history.append(recipient, type, data, collapseKey)
    this.opts.sink.stored(recipient, event.position, event.frame)
    return { id: event.id, ...delivered }
  }
}

