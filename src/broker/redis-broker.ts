// The Redis broker, whatever the deployment (one server, Sentinel, Cluster):
// the subscriptions (subscriptions.ts: the classic channel and the users who
// have a stream here), one command client for history reads and publishing,
// and, when publishes wait for replicas, a second one, so that a WAIT never
// holds up history reads. "Up" means subscriptions and commands both work.
// Every call has a deadline: a node that hangs fails calls, it does not hold them.
import { EventEmitter, once } from 'node:events'
import { Cluster } from 'ioredis'
import { formatEntryId, formatEventId, parseEntryId, recipientTag, START } from '../history/event-id.js'
import type { HistoryRead, ReadRequest, StoredEvent } from '../history/replay.js'
import type { LogLimiter } from '../log-limiter.js'
import type { RedisConfig } from '../redis-config.js'
import { isClassicCopy, isEnvelope } from '../history/envelope.js'
import { encodeEvent } from '../sse/frame.js'
import { Batcher } from './batcher.js'
import { type Broker, BrokerUnavailable, type Delivery, IdempotencyConflict, type LiveSink, NotReplicated, OutcomeUnknown, type Presence, type PublishItem, type PublishOptions } from './broker.js'
import { deadline } from './deadline.js'
import { historyKey } from './keys.js'
import { groupByNode } from './node-groups.js'
import { askPresence } from './presence.js'
import { runPublishScript, type ScriptOptions } from './publish-script.js'
import { closeClient, type CommandClient, createCommandClient, refreshSlotsSoon, restartWhenEnded } from './redis-clients.js'
import { Subscriptions } from './subscriptions.js'

export interface RedisBrokerOptions {
  config: RedisConfig
  channel: string
  historySize: number
  historyTtlS: number
  idempotencyTtlS: number
  logs: LogLimiter
  sink: LiveSink
  /** A command client to use instead of one made from `config` (tests count its pipelines). */
  commandClient?: CommandClient
}

type Entry = [id: string, fields: string[]]

export class RedisBroker extends EventEmitter implements Broker {
  readonly kind = 'redis'
  readonly subscriptions: Subscriptions
  readonly #commands: CommandClient
  /** The command client, or its own when publishes WAIT (a WAIT blocks its connection). */
  readonly #publishing: CommandClient
  readonly #reads: Batcher<ReadRequest, HistoryRead>
  readonly #script: ScriptOptions
  readonly #timeoutMs: number
  #up = false
  #closed = false

  constructor(private readonly opts: RedisBrokerOptions) {
    super()
    const { config } = opts
    this.#timeoutMs = config.commandTimeoutMs
    this.#commands = opts.commandClient ?? createCommandClient(config)
    this.#publishing = config.waitReplicas > 0 ? createCommandClient(config) : this.#commands
    for (const client of new Set([this.#commands, this.#publishing])) {
      client.on('error', (err: Error & { code?: string }) => {
        opts.logs.write('warn', 'redis-commands-error', { err: { message: err.message, code: err.code } }, 'redis command connection error')
      })
      client.on('ready', this.#update)
      client.on('close', this.#update)
      client.on('end', this.#update)
      restartWhenEnded(client, () => this.#closed)
    }
    this.subscriptions = new Subscriptions({
      config,
      channel: opts.channel,
      ...(this.#commands instanceof Cluster && { cluster: this.#commands }),
      logs: opts.logs,
      onMessage: (raw, own) => {
        // A stored event on the classic channel: an old publisher (upgrade) or no sharded pub/sub.
        if (!own && !this.subscriptions.classicCarriesStored && isEnvelope(raw) && !isClassicCopy(raw)) {
          this.subscriptions.classicCarriesStored = true
        }
        opts.sink.message(raw, own)
      },
      detectSharded: () => this.#detectSharded(),
    })
    this.subscriptions.on('up', this.#update)
    this.subscriptions.on('down', this.#update)
    this.subscriptions.on('lost', (users: string[] | null) => this.emit('lost', users))
    this.subscriptions.on('regained', (users: string[] | null) => this.emit('regained', users))
    this.#reads = new Batcher((batch) => this.#readBatch(batch))
    this.#script = {
      channel: opts.channel,
      historySize: opts.historySize,
      historyTtlS: opts.historyTtlS,
      routing: config.classicCopy ? 'both' : 'shard',
      idempotencyTtlS: opts.idempotencyTtlS,
      waitReplicas: config.waitReplicas,
      waitTimeoutMs: config.waitTimeoutMs,
    }
  }

  get up(): boolean {
    return this.#up
  }

  start(): void {
    for (const client of new Set([this.#commands, this.#publishing])) {
      if (client.status === 'wait') client.connect().catch(() => {})
    }
    this.subscriptions.start()
  }

  async close(): Promise<void> {
    this.#closed = true
    this.subscriptions.removeListener('down', this.#update)
    for (const client of new Set([this.#commands, this.#publishing])) client.removeListener('close', this.#update)
    this.#up = false
    await this.subscriptions.close()
    await Promise.all([...new Set([this.#commands, this.#publishing])].map((client) => closeClient(client, this.#timeoutMs)))
  }

  live(recipient: string): boolean {
    return this.subscriptions.live(recipient)
  }

  attach(recipient: string): Promise<void> {
    return deadline(this.subscriptions.acquire(recipient), this.#timeoutMs, 'subscribing to the recipient channel')
  }

  detach(recipient: string): void {
    this.subscriptions.release(recipient)
  }

  read(request: ReadRequest): Promise<HistoryRead> {
    return deadline(this.#readRetrying(request), this.#timeoutMs, 'reading the history')
  }

  /**
   * A read may be repeated: a connection closed under it (a Cluster node
   * replaced, a failover) is tried again, until the call's deadline.
   */
  async #readRetrying(request: ReadRequest): Promise<HistoryRead> {
    const until = performance.now() + this.#timeoutMs
    for (let wait = 50; ; wait = Math.min(wait * 2, 400)) {
      try {
        return await this.#reads.add(request)
      } catch (err) {
        this.#trouble()
        if (performance.now() + wait >= until) throw err
        await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
  }

  async publish(items: readonly PublishItem[], options?: PublishOptions): Promise<Delivery[]> {
    try {
      return await deadline(runPublishScript(this.#publishing, items, this.#script, options), this.#timeoutMs, 'publishing')
    } catch (err) {
      const failure = classify(err)
      if (failure instanceof BrokerUnavailable || failure instanceof OutcomeUnknown) this.#trouble()
      throw failure
    }
  }

  /** A call failed or timed out: on a Cluster, its slot may have a new master. */
  #trouble(): void {
    if (this.#publishing instanceof Cluster) refreshSlotsSoon(this.#publishing)
    if (this.#commands instanceof Cluster && this.#commands !== this.#publishing) refreshSlotsSoon(this.#commands)
  }

  /**
   * Without sharded pub/sub (Redis before 7) there are no user channels to
   * count: every instance reads everyone's events, and nobody knows who is online.
   */
  async presence(users: readonly string[]): Promise<Presence[]> {
    if (this.subscriptions.sharded === false) return users.map(() => ({ online: null, instances: null }))
    return deadline(askPresence(this.#commands, this.opts.channel, users), this.#timeoutMs, 'asking presence')
  }

  /** SSUBSCRIBE exists from Redis 7.0 on (and can be renamed away); COMMAND INFO answers nil for an unknown one. */
  async #detectSharded(): Promise<boolean> {
    if (this.#commands.status !== 'ready') await deadline(once(this.#commands, 'ready'), this.#timeoutMs * 5, 'connecting to Redis')
    const info = (await deadline(this.#commands.call('COMMAND', 'INFO', 'SSUBSCRIBE'), this.#timeoutMs, 'COMMAND INFO')) as unknown[]
    return Array.isArray(info) && info[0] !== null && info[0] !== undefined
  }

  // Per request: the range from its position (when it has one) and the newest
  // entry. Both in one pipeline per node for the whole batch: one round trip.
  async #readBatch(batch: ReadRequest[]): Promise<HistoryRead[]> {
    const keys = batch.map(({ recipient }) => historyKey(this.opts.channel, recipient))
    const reads: HistoryRead[] = new Array(batch.length)
    await Promise.all(
      groupByNode(this.#commands, keys).map(async (group) => {
        const pipeline = this.#commands.pipeline()
        for (const i of group) {
          const { from } = batch[i] as ReadRequest
          const key = keys[i] as string
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
        for (const i of group) {
          const { recipient, from } = batch[i] as ReadRequest
          let range: StoredEvent[] = []
          if (from !== undefined) {
            const tag = recipientTag(recipient)
            range = next().map((e) => toStored(e, tag))
          }
          const newest = next()[0]
          const trimmed = newest === undefined ? undefined : fieldOf(newest, 'w')
          reads[i] = {
            range,
            tip: newest === undefined ? undefined : parseEntryId(newest[0]),
            // Only with a collapse key in use (redis/publish.lua): what was ever trimmed.
            ...(trimmed !== undefined && { trimmed: parseEntryId(trimmed) ?? START }),
          }
        }
      }),
    )
    return reads
  }

  #update = (): void => {
    const up =
      this.subscriptions.up && this.#commands.status === 'ready' && (this.#publishing === this.#commands || this.#publishing.status === 'ready')
    if (up === this.#up) return
    this.#up = up
    this.emit(up ? 'up' : 'down')
  }
}

/**
 * What a failed publish means for a retry. ioredis refuses to send while
 * disconnected (the offline queue is off), and a Cluster node refuses what it
 * cannot run (CLUSTERDOWN, TRYAGAIN, a redirection): nothing ran. Any other
 * failure (a timeout, a connection lost mid-call) may come after the script
 * ran. (A batch that failed on one node and ran on another is already an
 * OutcomeUnknown: publish-script.ts.)
 */
function classify(err: unknown): unknown {
  if (err instanceof IdempotencyConflict || err instanceof NotReplicated || err instanceof OutcomeUnknown) return err
  const message = (err as Error).message ?? String(err)
  if (/enableOfflineQueue options is false/.test(message)) return new BrokerUnavailable(message)
  // A Cluster refused to run it: down, resharding, or redirecting past ioredis's limit.
  if (/^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK) |^Too many Cluster redirections/.test(message)) return new BrokerUnavailable(message)
  return new OutcomeUnknown(message)
}

function toStored([entryId, fields]: Entry, tag: string): StoredEvent {
  const position = parseEntryId(entryId) ?? START
  let type = ''
  let data = '{}'
  let replaced: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 't') type = fields[i + 1] as string
    else if (fields[i] === 'd') data = fields[i + 1] as string
    else if (fields[i] === 'r') replaced = fields[i + 1] as string
  }
  const id = formatEventId(position, tag)
  const frame = Buffer.from(encodeEvent(type === '' ? { id, data } : { event: type, id, data }))
  return { id, position, frame, ...(replaced !== undefined && { replaced }) }
}

function fieldOf([, fields]: Entry, name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}
