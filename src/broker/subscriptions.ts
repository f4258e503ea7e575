// What this process takes off Redis: the classic channel (NOTIFY_CHANNEL, plain
// PUBLISH, every instance) and the own channel of each user who has a stream
// here (sharded pub/sub), so that an instance pays only for its own users.
//
// One mechanism does all the work: a reconciling pass that makes what Redis has
// confirmed match what is wanted (a user's first stream wants their channel, the
// last one's close stops wanting it), run after any change: new or departed
// users (batched per turn of the event loop: a connect storm costs a few
// pipelined round trips, not one per connect), a subscriber connection that
// came back, a Cluster slot that moved. New and departed users are reconciled
// on their own (a pass costs what changed, not every user here: with 15,000
// users, visiting all of them on every connect made connects quadratic);
// topology changes reconcile everyone. ioredis keeps the topology (the Sentinel
// master, the Cluster slot map) and the connections; it does not say when a
// subscription is confirmed or lost, and both matter here (resume.ts reads the
// history only after a stream's channel is confirmed). Any involuntary loss
// emits 'down'; 'up' follows once everything wanted is confirmed again (the
// instance's readiness). Streams need to know more precisely whose live
// delivery was lost, so that one hung Cluster master does not hold up the
// users of the others: 'lost' names the users (null: everyone, when the
// classic channel carried stored events), 'regained' names them once their
// channels are confirmed again; resume.ts holds and catches up just those.
import { EventEmitter } from 'node:events'
import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'
import type { LogLimiter } from '../log-limiter.js'
import type { RedisConfig } from '../redis-config.js'
import { liveChannel } from './keys.js'
import { commandGroups, planPass, slotMapKey } from './subscription-plan.js'
import { refreshSlotsSoon, SLOTS_REFRESH_SOON_MS, subscriberOptions } from './redis-clients.js'
import { SerialRunner } from './serial-runner.js'
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
  /** Everyone's live delivery is lost (also before the first pass completes). */
  #lostAll = true
  /** Users whose channel was lost and is not confirmed again yet (while not #lostAll). */
  readonly #lostUsers = new Set<string>()
  /**
   * True once a stored event came on the classic channel (an old publisher
   * during an upgrade, or Redis without sharded pub/sub): then losing the
   * classic subscription loses stored events of anyone, not only plain ones.
   */
  classicCarriesStored = false
  readonly #runner: SerialRunner
  /** Asks for a pass (subscription changes are made by passes only). */
  readonly #schedule: () => void
  /** Users whose wanted and confirmed channel may differ: the next pass looks at them. */
  #dirty = new Set<string>()
  /**
   * The next pass must look at every user: at start, and after anything that
   * can change confirmed channels other than a user's arrival or departure (a
   * connection lost or back, a slot map change, a failed pass).
   */
  #full = true
  /** While down on a Cluster: reads the slot map every second, so that a promoted replica is found soon. */
  #watchSlots: NodeJS.Timeout | undefined
  /** The slot map as of the last refresh: ranges of slots and their masters. */
  #slotMap = ''
  /** Messages taken off Redis: on the classic channel, and on users' own channels. */
  readonly received = { classic: 0, user: 0 }

  constructor(private readonly opts: SubscriptionsOptions) {
    super()
    this.#runner = new SerialRunner(() => this.#pass(), PASS_GAP_MS, (err) => {
      // A node that refused or timed out: the runner tries again shortly (its
      // link may be reconnecting, or the slot map is being refreshed). A pass
      // cut short by close() is no news.
      if (this.#closed) return
      this.#full = true
      opts.logs.write('warn', 'redis-subscribe', { err: { message: (err as Error).message } }, 'subscribing failed; retrying')
    })
    this.#schedule = this.#runner.request
    // A slot map that changed (failover, migration): channels may live elsewhere now.
    opts.cluster?.on('refresh', this.#onRefresh)
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

  /** Whether events published to `user` from now on reach this process (their channel, and the classic one where needed). */
  live(user: string): boolean {
    if (this.#lostAll) return false
    return this.#sharded === false || this.#active.has(liveChannel(this.opts.channel, user))
  }

  /** False once Redis was found to have no sharded pub/sub; undefined until asked. */
  get sharded(): boolean | undefined {
    return this.#sharded
  }

  start(): void {
    this.#scheduleFull()
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
      this.#dirty.add(user)
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
    this.#lostUsers.delete(user)
    const channel = liveChannel(this.opts.channel, user)
    // Nobody waits any more: a stream that gave up (its deadline) is closed.
    this.#waiters.delete(channel)
    // Also when not confirmed yet: an SSUBSCRIBE in flight may confirm it
    // after this, and the pass that follows that one drops it again.
    this.#dirty.add(user)
    this.#schedule()
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#runner.stop()
    clearInterval(this.#watchSlots)
    this.opts.cluster?.removeListener('refresh', this.#onRefresh)
    this.#setUp(false, false)
    await Promise.all([...this.#links.values()].map((link) => link.close()))
    this.#links.clear()
  }

  /**
   * ioredis refreshes the slot map every few seconds and says so each time; a
   * pass (which visits every user) is scheduled only when a slot's master changed.
   */
  #onRefresh = (): void => {
    const key = slotMapKey((this.opts.cluster as Cluster).slots)
    // Unchanged, unless a full pass waits for it (a channel whose slot had no master, a moved link).
    if (key === this.#slotMap && !this.#full) return
    this.#slotMap = key
    this.#scheduleFull()
  }

  #scheduleFull = (): void => {
    this.#full = true
    this.#schedule()
  }

  async #pass(): Promise<void> {
    if (this.#closed) return
    if (this.#sharded === undefined) await this.#detect()
    const full = this.#full
    this.#full = false
    const dirty = this.#dirty
    this.#dirty = new Set()
    // Classic pub/sub reaches every node of a Cluster: its subscription stays
    // where it is while its connection lives (moving it would lose or repeat events).
    const classicNode = this.#classicOn ?? this.#nodeOf(this.opts.channel)
    const { active, wanted } = this.#scope(full ? this.#refs.keys() : dirty, full)

    const plan = planPass(active, wanted, classicNode)
    this.#lose(plan.moved)
    for (const channels of plan.unsubscribe.values()) for (const channel of channels) this.#active.delete(channel)
    // Links: one per node in use; in a full pass, the others are closed (with
    // the server's subscriptions on them, none of them wanted any more).
    for (const node of plan.nodes) if (!this.#links.has(node)) this.#open(node)
    for (const [node, link] of this.#links) {
      if (!full || plan.nodes.has(node)) continue
      this.#links.delete(node)
      plan.unsubscribe.delete(node)
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
    for (const [node, channels] of plan.subscribe) {
      const link = this.#links.get(node)
      // Not connected yet: its 'ready' schedules a full pass.
      if (!link?.ready) {
        this.#full = true
        continue
      }
      for (const group of this.#groups(channels)) {
        work.push(link.ssubscribe(group).then(() => {
          if (this.#links.get(node) !== link || !link.ready) return
          const regained: string[] = []
          for (const channel of group) {
            this.#confirm(channel, node)
            const user = this.#userOf(channel)
            if (!this.#lostAll && this.#lostUsers.delete(user)) regained.push(user)
          }
          if (regained.length > 0) this.emit('regained', regained)
        }))
      }
    }
    for (const [node, channels] of plan.unsubscribe) {
      const link = this.#links.get(node)
      if (!link?.ready) continue
      for (const group of this.#groups(channels)) work.push(link.sunsubscribe(group).catch(() => {}))
    }
    const results = await Promise.allSettled(work)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    // Only losses take 'up' away (#lose, #forgetNode): a new user still being
    // subscribed is no outage for the others. Everything that takes it away
    // asks for a full pass, and only a full pass knows that nothing is missing.
    if (!full || !this.#complete(classicNode, wanted)) return
    this.#setUp(true, true)
    if (this.#lostAll) {
      this.#lostAll = false
      this.#lostUsers.clear()
      this.emit('regained', null)
    }
  }

  /**
   * What a pass reconciles: every user (`full`), or just the given ones with
   * what Redis confirmed for them. A channel whose slot has no known master
   * waits for the next full pass (the slot map refresh brings it).
   */
  #scope(users: Iterable<string>, full: boolean): { active: ReadonlyMap<string, string>; wanted: Map<string, string | undefined> } {
    const wanted = new Map<string, string | undefined>()
    const active = full ? this.#active : new Map<string, string>()
    if (!this.#sharded) return { active, wanted }
    for (const user of users) {
      const channel = liveChannel(this.opts.channel, user)
      if (!full) {
        const on = this.#active.get(channel)
        if (on !== undefined) (active as Map<string, string>).set(channel, on)
        if (!this.#refs.has(user)) continue
      }
      const node = this.#nodeOf(channel)
      if (node === undefined) this.#full = true
      wanted.set(channel, node)
    }
    return { active, wanted }
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

  #groups(channels: string[]): string[][] {
    return commandGroups(channels, this.opts.cluster === undefined ? undefined : calculateSlot, CHUNK)
  }

  #open(node: string): void {
    const config = this.opts.config
    const target = node === MAIN ? undefined : hostPort(node)
    const link = new SubscriberLink(node, subscriberOptions(config, target), config.commandTimeoutMs, this.opts.logs)
    link.on('ready', this.#scheduleFull)
    link.on('lost', () => {
      this.#forgetNode(node)
      this.#scheduleFull()
    })
    link.on('moved', () => {
      // Which of its channels left is not said: resubscribe them all (a repeated
      // SSUBSCRIBE is harmless) once the slot map is fresh.
      this.#forgetNode(node)
      this.#full = true
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
      // Plain events are live only: losing them holds nobody up. Stored ones
      // on the classic channel (see classicCarriesStored) concern everyone.
      if ((this.#sharded === false || this.classicCarriesStored) && !this.#lostAll) {
        this.#lostAll = true
        this.#lostUsers.clear()
        this.emit('lost', null)
      }
    }
  }

  #lose(channels: string[]): void {
    if (channels.length === 0) return
    const users: string[] = []
    for (const channel of channels) {
      this.#active.delete(channel)
      const user = this.#userOf(channel)
      if (!this.#lostAll && this.#refs.has(user) && !this.#lostUsers.has(user)) {
        this.#lostUsers.add(user)
        users.push(user)
      }
    }
    this.#setUp(false, true)
    if (users.length > 0) this.emit('lost', users)
  }

  /** The user a live channel (`<channel>:{<user>}`) is for. */
  #userOf(channel: string): string {
    return channel.slice(this.opts.channel.length + 2, -1)
  }

  #setUp(up: boolean, emit: boolean): void {
    if (up === this.#up) return
    this.#up = up
    const cluster = this.opts.cluster
    if (up || this.#closed) {
      clearInterval(this.#watchSlots)
      this.#watchSlots = undefined
    } else if (cluster !== undefined && this.#watchSlots === undefined) {
      this.#watchSlots = setInterval(() => refreshSlotsSoon(cluster), SLOTS_REFRESH_SOON_MS).unref()
    }
    if (emit) this.emit(up ? 'up' : 'down')
  }
}

function hostPort(node: string): { host: string; port: number } {
  const at = node.lastIndexOf(':')
  return { host: node.slice(0, at), port: Number(node.slice(at + 1)) }
}
