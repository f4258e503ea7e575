// Puts each stream in its place in its recipient's history: on connect (from
// Last-Event-ID, or at the newest event for a fresh stream) and, after the
// broker was down, for every open stream from the last event it has. While a
// stream is being positioned its live events are queued (stream.ts), so the
// switch from history to live has no gap and no duplicate.
//
// The order that makes this lossless: a new stream's live delivery (its user's
// channel, broker.attach) is confirmed before its position is read. An event
// published in between is then in the history read, or arrives live, or both
// (the stream drops the copy by its id); read first, and an event published
// between the read and the subscription would be in neither.
import type { Broker } from '../broker/broker.js'
import { type Position, parseEventId, recipientTag, START } from '../history/event-id.js'
import { decide, type Outcome } from '../history/replay.js'
import type { LogLimiter } from '../log-limiter.js'
import type { Hub } from './hub.js'
import type { SseStream } from './stream.js'

export type ResyncReason = 'malformed' | 'foreign' | 'gone'

export interface ResumeStats {
  /** Stored events written from history (replay on connect and catch-up). */
  replayed: number
  resyncs: Record<ResyncReason, number>
  /** Catch-up rounds started (one per broker recovery; the first connection is none). */
  catchUps: number
  /** Streams sent away with `retry:` because the history could not be read. */
  unavailable: number
}

export interface ResumeOptions {
  hub: Hub
  broker: Broker
  /** HISTORY_SIZE; 0 means no history: every stream starts live. */
  historySize: number
  logs: LogLimiter
}

const LIVE: Outcome = { resync: false, position: START, replay: [] }
/** A failed catch-up read is tried again after this long... */
const CATCH_UP_RETRY_MS = 1000
/** ...this many times in all, before the stream is sent away with `retry:`. */
const CATCH_UP_TRIES = 10

export class Resumer {
  readonly stats: ResumeStats = { replayed: 0, resyncs: { malformed: 0, foreign: 0, gone: 0 }, catchUps: 0, unavailable: 0 }
  // Bumped on every broker recovery. A read issued before the latest recovery
  // may miss events published while live delivery was down, so it is redone.
  #epoch = 0
  // Streams held because live delivery was lost; only the next catch-up releases them.
  readonly #suspended = new WeakSet<SseStream>()
  // Streams whose user's live delivery this resumer asked the broker for (one detach each).
  readonly #attached = new WeakSet<SseStream>()
  // Catch-up reads that failed in a row, per stream (a Cluster answers CLUSTERDOWN
  // to reads for a moment after its subscriptions work again).
  readonly #failedCatchUps = new WeakMap<SseStream, number>()
  #retryTimer: NodeJS.Timeout | undefined

  constructor(private readonly opts: ResumeOptions) {
    opts.hub.on('close', (stream: SseStream) => {
      if (!this.#attached.delete(stream)) return
      opts.broker.detach(stream.userId)
    })
  }

  /** Positions a new (held) stream and lets it go live. */
  join(stream: SseStream, lastEventId: string | undefined): void {
    this.#attached.add(stream)
    const attached = this.opts.broker.attach(stream.userId)
    if (this.opts.historySize === 0) {
      // No history: an id cannot be honoured, and the client must be told.
      void this.#live(stream, attached, lastEventId === undefined ? LIVE : this.#resync('gone', START))
      return
    }
    if (lastEventId === undefined) {
      void this.#sync(stream, undefined, undefined, attached)
      return
    }
    const id = parseEventId(lastEventId)
    if (!id.ok) void this.#sync(stream, undefined, 'malformed', attached)
    else if (id.tag !== recipientTag(stream.userId)) void this.#sync(stream, undefined, 'foreign', attached)
    // 0-0 is "before everything": the position a first visit was given while its
    // history was empty. Everything stored since is replayed (or a resync, if
    // the history has filled up and may have been trimmed).
    else void this.#sync(stream, id.position, undefined, attached)
  }

  /**
   * Live delivery of these users' events (null: everyone's) is lost: queue
   * live events on their streams until the catch-up has read the history.
   * Otherwise the first live event after the reconnect would move a stream
   * past everything stored during the outage.
   */
  suspend(users: readonly string[] | null = null): void {
    if (this.opts.historySize === 0) return
    for (const stream of this.opts.hub.streamsOf(users)) {
      if (stream.held) continue
      stream.hold()
      this.#suspended.add(stream)
    }
  }

  /** After an outage: every stream of these users (null: all) not already being positioned reads from where it is. */
  catchUp(users: readonly string[] | null = null): void {
    if (this.opts.historySize === 0) return
    this.#epoch++
    if (this.#epoch > 1) this.stats.catchUps++
    for (const stream of this.opts.hub.streamsOf(users)) {
      // A held stream that is not suspended has a read in flight; it sees the new epoch and reads again.
      if (stream.held && !this.#suspended.has(stream)) continue
      this.#suspended.delete(stream)
      stream.hold()
      void this.#sync(stream, stream.position)
    }
  }

  /**
   * Once everything is confirmed again ('up'): streams still held for a
   * catch-up whose users are live again catch up now. Their 'regained' should
   * have done it; this is the safety net for one that came while they were
   * still being positioned (a stream left held would get heartbeats only).
   */
  resumeSuspended(): void {
    const users = new Set<string>()
    for (const stream of this.opts.hub.streams()) {
      if (this.#suspended.has(stream) && this.opts.broker.live(stream.userId)) users.add(stream.userId)
    }
    if (users.size > 0) this.catchUp([...users])
  }

  async #live(stream: SseStream, attached: Promise<void>, outcome: Outcome): Promise<void> {
    try {
      await attached
    } catch (err) {
      this.#unavailable(stream, err)
      return
    }
    if (stream.closed) return
    stream.apply(outcome)
    stream.release()
  }

  async #sync(stream: SseStream, from: Position | undefined, forced?: ResyncReason, attached?: Promise<void>): Promise<void> {
    try {
      // Live delivery first, then the history: see the top of this file.
      if (attached !== undefined) await attached
      if (stream.closed) return
      for (;;) {
        const epoch = this.#epoch
        const read = await this.opts.broker.read({ recipient: stream.userId, from })
        if (stream.closed) return
        let outcome = decide(from, read, this.opts.historySize)
        if (forced !== undefined || outcome.resync) outcome = this.#resync(forced ?? 'gone', outcome.position)
        forced = undefined
        stream.apply(outcome)
        this.#failedCatchUps.delete(stream)
        this.stats.replayed += outcome.replay.length
        if (epoch === this.#epoch || stream.closed) break
        from = stream.position
      }
      if (!this.opts.broker.live(stream.userId)) {
        // Positioned while live delivery is down: stay held until the catch-up.
        this.#suspended.add(stream)
        return
      }
      stream.release()
    } catch (err) {
      if (attached === undefined && this.#retryLater(stream)) return
      this.#unavailable(stream, err)
    }
  }

  /**
   * A catch-up read failed: the stream stays open and held (it lost nothing
   * yet) and is read again shortly, rather than sending every open stream of
   * the instance away at once. After CATCH_UP_TRIES failures it is sent away.
   */
  #retryLater(stream: SseStream): boolean {
    const failed = (this.#failedCatchUps.get(stream) ?? 0) + 1
    if (failed >= CATCH_UP_TRIES || stream.closed) return false
    this.#failedCatchUps.set(stream, failed)
    this.#suspended.add(stream)
    this.#retryTimer ??= setTimeout(() => {
      this.#retryTimer = undefined
      for (const held of this.opts.hub.streams()) {
        if (!this.#suspended.has(held) || !this.#failedCatchUps.has(held)) continue
        // Live delivery lost again meanwhile: the next 'regained' catches it up.
        if (!this.opts.broker.live(held.userId)) continue
        this.#suspended.delete(held)
        void this.#sync(held, held.position)
      }
    }, CATCH_UP_RETRY_MS).unref()
    return true
  }

  /**
   * The history cannot be read, or live delivery not confirmed (Redis
   * unreachable or hung): send the client away to come back shortly;
   * EventSource keeps its Last-Event-ID, so nothing is lost.
   */
  #unavailable(stream: SseStream, err: unknown): void {
    this.stats.unavailable++
    this.opts.logs.write('warn', 'history-read', { err: { message: (err as Error).message } }, 'history or subscription unavailable; stream told to reconnect')
    stream.end('unavailable')
  }

  #resync(reason: ResyncReason, position: Position): Outcome {
    this.stats.resyncs[reason]++
    // With history on, the stream is told where it stands now (positionFrame).
    return { resync: true, position, replay: [], announce: this.opts.historySize > 0 }
  }
}
