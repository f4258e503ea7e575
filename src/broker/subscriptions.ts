// What this process takes off Redis: the classic channel (NOTIFY_CHANNEL, plain
// PUBLISH, every instance) and the own channel of each user who has a stream
// here (sharded pub/sub), so that an instance pays only for its own users.
//
// One mechanism does all the work: a reconciling pass that makes what Redis has
// confirmed match what is wanted (a user's first stream wants their channel, the
// last one's close stops wanting it), run after any change: new or departed
// users (batched per turn of the event loop: a connect storm costs a few
// pipelined round trips, not one per connect), a subscriber connection that
// came back, a Cluster slot that moved. ioredis keeps the topology (the Sentinel
// master, the Cluster slot map) and the connections; it does not say when a
// subscription is confirmed or lost, and both matter here (resume.ts reads the
// history only after a stream's channel is confirmed). Any involuntary loss
// emits 'down'; 'up' follows once everything wanted is confirmed again.
import { EventEmitter } from 'node:events'
import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'
import type { LogLimiter } from '../log-limiter.js'
import type { RedisConfig } from '../redis-config.js'
import { liveChannel } from './keys.js'
import { subscriberOptions } from './redis-clients.js'
import { SubscriberLink } from './subscriber-link.js'

export interface SubscriptionsOptions {
  config: RedisConfig
  /** NOTIFY_CHANNEL. */
  channel: string
  /** The command client when it is a Cluster: its slot map says which node serves a channel. */
  cluster?: Cluster
  logs: LogLimiter
  /** Every message, with whether it came on a user's own channel (sharded) or the classic one. */
  onMessage: (raw: string, sharded: boolean) => void
  /** Whether Redis has sharded pub/sub (7.0 and later); asked once, before the first user channel. */
  detectSharded: () => Promise<boolean>
}

/** Most channels in one SSUBSCRIBE / SUNSUBSCRIBE (single server and Sentinel). */
const CHUNK = 1000
/**
 * Least time between the starts of two passes. Passes run one at a time, so a
 * busy instance batches by itself (what arrives during one round trip goes in
 * the next); this gap also batches a storm of connects that arrive spread out
 * (each after its own auth call): at most 500 passes a second, whatever the
 * connect rate, for at most 2 ms added to a first stream's connect.
 */
const PASS_GAP_MS = 2
const MAIN = 'main'

export class Subscriptions extends EventEmitter {
  /** Open streams per user. */
  readonly #refs = new Map<string, number>()
  /** Channel -> node that confirmed it. */
  readonly #active = new Map<string, string>()
  /** Channel -> streams waiting for its confirmation. */
  readonly #waiters = new Map<string, (() => void)[]>()
  readonly #links = new Map<string, SubscriberLink>()
  /** The node the classic channel is confirmed on, if it is. */
  #classicOn: string | undefined
  /** Undefined until asked; false: Redis before 7, every event comes on the classic channel. */
  #sharded: boolean | undefined
  #up = false
  #closed = false
  #scheduled = false
  #running = false
  #again = false
  #retryTimer: NodeJS.Timeout | undefined
  #failures = 0
  #lastPass = -Infinity
  /** Messages taken off Redis: on the classic channel, and on users' own channels. */
  readonly received = { classic: 0, user: 0 }

  constructor(private readonly opts: SubscriptionsOptions) {
    super()
    // A slot map that changed (failover, migration): channels may live elsewhere now.
    opts.cluster?.on('refresh', this.#schedule)
  }

  get up(): boolean {
    return this.#up
  }

  /** Users' channels confirmed subscribed. */
  get channels(): number {
    return this.#active.size
  }

  /** Subscriber connections open (one per Cluster master in use; one otherwise). */
  get links(): number {
    return this.#links.size
  }

  /** False once Redis was found to have no sharded pub/sub; undefined until asked. */
  get sharded(): boolean | undefined {
    return this.#sharded
  }

  start(): void {
    this.#schedule()
  }

  /**
   * One more stream of `user`. Resolves once events published to the user from
   * now on are sure to arrive here (at once when their channel already is).
   */
  acquire(user: string): Promise<void> {
    this.#refs.set(user, (this.#refs.get(user) ?? 0) + 1)
    const channel = liveChannel(this.opts.channel, user)
    if (this.#sharded === false || this.#active.has(channel)) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const list = this.#waiters.get(channel)
      if (list === undefined) this.#waiters.set(channel, [resolve])
      else list.push(resolve)
      this.#schedule()
    })
  }

  /** One stream of `user` fewer; the channel goes with the last one. */
  release(user: string): void {
    const n = (this.#refs.get(user) ?? 0) - 1
    if (n > 0) {
      this.#refs.set(user, n)
      return
    }
    this.#refs.delete(user)
    const channel = liveChannel(this.opts.channel, user)
    // Nobody waits any more: a stream that gave up (its deadline) is closed.
    this.#waiters.delete(channel)
    if (this.#active.has(channel)) this.#schedule()
  }

  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#retryTimer)
    this.opts.cluster?.removeListener('refresh', this.#schedule)
    this.#setUp(false, false)
    await Promise.all([...this.#links.values()].map((link) => link.close()))
    this.#links.clear()
  }

  #schedule = (): void => {
    if (this.#scheduled || this.#closed) return
    this.#scheduled = true
    // Every acquire and release of this turn (or of the gap) joins the same pass.
    const wait = this.#lastPass + PASS_GAP_MS - performance.now()
    if (wait > 0) setTimeout(this.#run, wait)
    else setImmediate(this.#run)
  }

  #run = async (): Promise<void> => {
    this.#scheduled = false
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = true
    try {
      do {
        const wait = this.#lastPass + PASS_GAP_MS - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        this.#again = false
        this.#lastPass = performance.now()
        await this.#pass()
        this.#failures = 0
      } while (this.#again && !this.#closed)
    } catch (err) {
      // A node that refused or timed out: try again shortly (its link may be
      // reconnecting, or the slot map is being refreshed).
      this.#failures++
      this.opts.logs.write('warn', 'redis-subscribe', { err: { message: (err as Error).message } }, 'subscribing failed; retrying')
      clearTimeout(this.#retryTimer)
      this.#retryTimer = setTimeout(this.#schedule, Math.min(100 * this.#failures, 2000)).unref()
    } finally {
      this.#running = false
    }
  }

  async #pass(): Promise<void> {
    if (this.#closed) return
    if (this.#sharded === undefined) await this.#detect()
    // Classic pub/sub reaches every node of a Cluster: its subscription stays
    // where it is while its connection lives (moving it would lose or repeat events).
    const classicNode = this.#classicOn ?? this.#nodeOf(this.opts.channel)
    const wanted = new Map<string, string | undefined>()
    if (this.#sharded) {
      for (const user of this.#refs.keys()) {
        const channel = liveChannel(this.opts.channel, user)
        wanted.set(channel, this.#nodeOf(channel))
      }
    }

    // Channels confirmed but no longer wanted: unsubscribed below, where their link stays.
    const toUnsubscribe = new Map<string, string[]>()
    for (const [channel, node] of this.#active) {
      if (wanted.has(channel)) continue
      this.#active.delete(channel)
      push(toUnsubscribe, node, channel)
    }
    // Links: one per node in use; the others are closed (with the server's
    // subscriptions on them, none of them wanted any more).
    const nodes = new Set<string>([...wanted.values(), classicNode].filter((n): n is string => n !== undefined))
    for (const node of nodes) if (!this.#links.has(node)) this.#open(node)
    for (const [node, link] of this.#links) {
      if (nodes.has(node)) continue
      this.#links.delete(node)
      toUnsubscribe.delete(node)
      void link.close()
    }

    const work: Promise<unknown>[] = []
    if (classicNode !== undefined && this.#classicOn !== classicNode) {
      const link = this.#links.get(classicNode)
      if (link?.ready) {
        work.push(link.subscribe(this.opts.channel).then(() => {
          if (this.#links.get(classicNode) === link) this.#classicOn = classicNode
        }))
      }
    }
    // Channels wanted but not confirmed where they now belong, per node (and slot).
    const toSubscribe = new Map<string, string[]>()
    for (const [channel, node] of wanted) {
      if (node === undefined || this.#active.get(channel) === node) continue
      // Confirmed on a node that no longer serves its slot: lost meanwhile.
      if (this.#active.has(channel)) this.#lose([channel])
      if (this.#links.get(node)?.ready) push(toSubscribe, node, channel)
    }
    for (const [node, channels] of toSubscribe) {
      const link = this.#links.get(node) as SubscriberLink
      for (const group of this.#groups(channels)) {
        work.push(link.ssubscribe(group).then(() => {
          if (this.#links.get(node) !== link || !link.ready) return
          for (const channel of group) this.#confirm(channel, node)
        }))
      }
    }
    for (const [node, channels] of toUnsubscribe) {
      const link = this.#links.get(node)
      if (!link?.ready) continue
      for (const group of this.#groups(channels)) work.push(link.sunsubscribe(group).catch(() => {}))
    }
    const results = await Promise.allSettled(work)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    // Only losses take 'up' away (#lose, #forgetNode): a new user still being
    // subscribed is no outage for the others.
    if (this.#complete(classicNode, wanted)) this.#setUp(true, true)
  }

  async #detect(): Promise<void> {
    this.#sharded = await this.opts.detectSharded()
    if (this.#sharded) return
    this.opts.logs.write(
      'warn', 'redis-no-sharded-pubsub', {},
      'Redis has no sharded pub/sub (before 7.0): every instance takes every event off the classic channel',
    )
    // Without user channels every stream is served from the classic channel.
    for (const waiters of this.#waiters.values()) for (const resolve of waiters) resolve()
    this.#waiters.clear()
  }

  #complete(classicNode: string | undefined, wanted: Map<string, string | undefined>): boolean {
    if (classicNode === undefined || this.#classicOn !== classicNode) return false
    for (const [channel, node] of wanted) if (node === undefined || this.#active.get(channel) !== node) return false
    return true
  }

  #confirm(channel: string, node: string): void {
    this.#active.set(channel, node)
    const waiters = this.#waiters.get(channel)
    if (waiters === undefined) return
    this.#waiters.delete(channel)
    for (const resolve of waiters) resolve()
  }

  /** Which node serves `channel`: the one connection, or the Cluster master of its slot. */
  #nodeOf(channel: string): string | undefined {
    if (this.opts.cluster === undefined) return MAIN
    return this.opts.cluster.slots[calculateSlot(channel)]?.[0]
  }

  /** Channels one SSUBSCRIBE may carry: one slot's on a Cluster, chunks otherwise. */
  *#groups(channels: string[]): Generator<string[]> {
    if (this.opts.cluster === undefined) {
      for (let i = 0; i < channels.length; i += CHUNK) yield channels.slice(i, i + CHUNK)
      return
    }
    const bySlot = new Map<number, string[]>()
    for (const channel of channels) push(bySlot, calculateSlot(channel), channel)
    yield* bySlot.values()
  }

  #open(node: string): void {
    const config = this.opts.config
    const target = node === MAIN ? undefined : hostPort(node)
    const link = new SubscriberLink(node, subscriberOptions(config, target), config.commandTimeoutMs, this.opts.logs)
    link.on('ready', this.#schedule)
    link.on('lost', () => {
      this.#forgetNode(node)
      this.#schedule()
    })
    link.on('moved', () => {
      // Which of its channels left is not said: resubscribe them all (a repeated
      // SSUBSCRIBE is harmless) once the slot map is fresh.
      this.#forgetNode(node)
      if (this.opts.cluster !== undefined) this.opts.cluster.refreshSlotsCache()
      else this.#schedule()
    })
    link.on('message', (channel: string, message: string, sharded: boolean) => {
      if (sharded) this.received.user++
      else this.received.classic++
      this.opts.onMessage(message, sharded)
    })
    this.#links.set(node, link)
    link.start()
  }

  /** Everything confirmed on `node` is gone. */
  #forgetNode(node: string): void {
    const lost: string[] = []
    for (const [channel, on] of this.#active) if (on === node) lost.push(channel)
    this.#lose(lost)
    if (this.#classicOn === node) {
      this.#classicOn = undefined
      this.#setUp(false, true)
    }
  }

  #lose(channels: string[]): void {
    if (channels.length === 0) return
    for (const channel of channels) this.#active.delete(channel)
    this.#setUp(false, true)
  }

  #setUp(up: boolean, emit: boolean): void {
    if (up === this.#up) return
    this.#up = up
    if (emit) this.emit(up ? 'up' : 'down')
  }
}

function push<K>(map: Map<K, string[]>, key: K, value: string): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

function hostPort(node: string): { host: string; port: number } {
  const at = node.lastIndexOf(':')
  return { host: node.slice(0, at), port: Number(node.slice(at + 1)) }
}
