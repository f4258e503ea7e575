// The embedded broker: no Redis, one instance. Publishing stores the event in
// memory (when history is on) and hands it straight to the sink, framed once.
import { EventEmitter } from 'node:events'
import type { HistoryRead, ReadRequest } from '../history/replay.js'
import { encodeEvent } from '../sse/frame.js'
import type { Broker, LiveSink, PublishItem } from './broker.js'
import { MemoryHistory } from './memory-history.js'

export interface MemoryBrokerOptions {
  historySize: number
  historyTtlS: number
  /** Bound on the memory the history may hold, in bytes. */
  historyMaxBytes: number
  sink: LiveSink
  now?: () => number
}

export class MemoryBroker extends EventEmitter implements Broker {
  readonly kind = 'embedded'
  readonly history: MemoryHistory
  #up = false

  constructor(private readonly opts: MemoryBrokerOptions) {
    super()
    this.history = new MemoryHistory({
      size: opts.historySize,
      ttlMs: opts.historyTtlS * 1000,
      maxBytes: opts.historyMaxBytes,
      now: opts.now,
    })
  }

  get up(): boolean {
    return this.#up
  }

  start(): void {
    if (this.#up) return
    this.#up = true
    this.emit('up')
  }

  async close(): Promise<void> {
    this.#up = false
    this.history.clear()
  }

  async read({ recipient, from }: ReadRequest): Promise<HistoryRead> {
    return this.history.read(recipient, from)
  }

  async publish(items: readonly PublishItem[]): Promise<(string | null)[]> {
    if (!this.#up) throw new Error('broker closed')
    return items.map(({ recipient, type, data }) => {
      if (this.opts.historySize === 0) {
        this.opts.sink.stored(recipient, undefined, Buffer.from(encodeEvent(type === undefined ? { data } : { event: type, data })))
        return null
      }
      const event = this.history.append(recipient, type, data)
      this.opts.sink.stored(recipient, event.position, event.frame)
      return event.id
    })
  }
}
