// The Redis broker: the one subscriber connection of the process (live events)
// and one command connection (history reads, publishing). "Up" means both work.
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import { formatEntryId, formatEventId, parseEntryId, recipientTag, START } from '../history/event-id.js'
import type { HistoryRead, ReadRequest, StoredEvent } from '../history/replay.js'
import type { LogLimiter } from '../log-limiter.js'
import { encodeEvent } from '../sse/frame.js'
import { Batcher } from './batcher.js'
import type { Broker, LiveSink, PublishItem } from './broker.js'
import { historyKey, runPublishScript } from './publish-script.js'
import { RedisSubscriber } from './redis-subscriber.js'

export interface RedisBrokerOptions {
  url: string
  channel: string
  historySize: number
  historyTtlS: number
  logs: LogLimiter
  sink: LiveSink
  /** Clients to use instead of ones made from `url` (the first is put in subscriber mode). */
  subscriberClient?: Redis
  commandClient?: Redis
}

type Entry = [id: string, fields: string[]]

export class RedisBroker extends EventEmitter implements Broker {
  readonly kind = 'redis'
  readonly subscriber: RedisSubscriber
  readonly #commands: Redis
  readonly #reads: Batcher<ReadRequest, HistoryRead>
  #up = false

  constructor(private readonly opts: RedisBrokerOptions) {
    super()
    this.subscriber = new RedisSubscriber({
      url: opts.url,
      channel: opts.channel,
      logs: opts.logs,
      onMessage: opts.sink.message,
      client: opts.subscriberClient,
    })
    this.#commands =
      opts.commandClient ??
      new Redis(opts.url, {
        lazyConnect: true,
        // Fail at once while disconnected: /publish answers 503 rather than
        // accept what it cannot store, and a stream is told to come back.
        enableOfflineQueue: false,
        // Never resend a command after a reconnect: a publish might run twice.
        maxRetriesPerRequest: 0,
        retryStrategy: (times) => Math.min(times * 100, 2000),
        connectionName: 'notify-commands',
      })
    this.#commands.on('error', (err: Error & { code?: string }) => {
      opts.logs.write('warn', 'redis-commands-error', { err: { message: err.message, code: err.code } }, 'redis command connection error')
    })
    this.#commands.on('ready', this.#update)
    this.#commands.on('close', this.#update)
    this.subscriber.on('up', this.#update)
    this.subscriber.on('down', this.#update)
    this.#reads = new Batcher((batch) => this.#readBatch(batch))
  }

  get up(): boolean {
    return this.#up
  }

  start(): void {
    this.subscriber.start()
    if (this.#commands.status === 'wait') this.#commands.connect().catch(() => {})
  }

  async close(): Promise<void> {
    this.#commands.removeListener('close', this.#update)
    this.subscriber.removeListener('down', this.#update)
    this.#up = false
    await this.subscriber.close()
    try {
      await this.#commands.quit()
    } catch {
      this.#commands.disconnect()
    }
  }

  read(request: ReadRequest): Promise<HistoryRead> {
    return this.#reads.add(request)
  }

  publish(items: readonly PublishItem[]): Promise<(string | null)[]> {
    return runPublishScript(this.#commands, items, this.opts)
  }

  // Per request: the range from its position (when it has one) and the newest
  // entry. Both in one pipeline for the whole batch: one round trip.
  async #readBatch(batch: ReadRequest[]): Promise<HistoryRead[]> {
    const pipeline = this.#commands.pipeline()
    for (const { recipient, from } of batch) {
      const key = historyKey(this.opts.channel, recipient)
      if (from !== undefined) pipeline.xrange(key, formatEntryId(from), '+', 'COUNT', this.opts.historySize + 1)
      pipeline.xrevrange(key, '+', '-', 'COUNT', 1)
    }
    const replies = (await pipeline.exec()) ?? []
    let k = 0
    const next = (): Entry[] => {
      const [err, value] = replies[k++] ?? [new Error('no reply')]
      if (err) throw err
      return value as Entry[]
    }
    return batch.map(({ recipient, from }) => {
      let range: StoredEvent[] = []
      if (from !== undefined) {
        const tag = recipientTag(recipient)
        range = next().map((e) => toStored(e, tag))
      }
      const newest = next()[0]
      return { range, tip: newest === undefined ? undefined : parseEntryId(newest[0]) }
    })
  }

  #update = (): void => {
    const up = this.subscriber.up && this.#commands.status === 'ready'
    if (up === this.#up) return
    this.#up = up
    this.emit(up ? 'up' : 'down')
  }
}

function toStored([entryId, fields]: Entry, tag: string): StoredEvent {
  const position = parseEntryId(entryId) ?? START
  let type = ''
  let data = '{}'
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 't') type = fields[i + 1] as string
    else if (fields[i] === 'd') data = fields[i + 1] as string
  }
  const id = formatEventId(position, tag)
  return { id, position, frame: Buffer.from(encodeEvent(type === '' ? { id, data } : { event: type, id, data })) }
}
