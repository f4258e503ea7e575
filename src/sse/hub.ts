// Every open stream of the process: the recipient index, the one shared
// heartbeat timer, the one shared expiry timer, and shutdown.
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Framed } from '../history/replay.js'
import type { Format } from './accept.js'
import { Deadlines } from './deadlines.js'
import { type Framer, framers } from './framer.js'
import { Router } from './router.js'
import { type CloseReason, type Headers, SseStream } from './stream.js'

export interface HubOptions {
  heartbeatIntervalMs: number
  retryMs: number
  maxBufferBytes: number
  now?: () => number
}

export interface HubStats {
  opened: number
  closed: Record<CloseReason, number>
  deliveries: number
}

/**
 * Heartbeats are spread over the interval: each stream belongs to one of
 * BEAT_SLOTS groups and one group is checked per tick, so that no single tick
 * writes to every stream (15,000 writes in one turn held events up ~200 ms;
 * 16 groups, still ~15 ms).
 */
const BEAT_SLOTS = 64

/** Emits 'open' (stream) and 'close' (stream, reason); used by tests and logs. */
export class Hub extends EventEmitter {
  readonly stats: HubStats = { opened: 0, closed: { client: 0, slow: 0, expired: 0, shutdown: 0, unavailable: 0 }, deliveries: 0 }
  readonly #router = new Router<SseStream>()
  /** The streams of each heartbeat group: a tick visits one group, not every stream. */
  readonly #beatSlots: Set<SseStream>[] = Array.from({ length: BEAT_SLOTS }, () => new Set())
  readonly #expiries: Deadlines<SseStream>
  readonly #heartbeat: NodeJS.Timeout
  /** Each format's frames, made once and shared by the streams in that format. */
  readonly #framers: Record<Format, Framer>
  #closing = false
  #opened = 0
  #tick = 0

  constructor(private readonly opts: HubOptions) {
    super()
    this.#expiries = new Deadlines((s) => s.end('expired'), opts.now)
    this.#heartbeat = setInterval(this.#beat, Math.max(1, Math.floor(opts.heartbeatIntervalMs / BEAT_SLOTS))).unref()
    this.#framers = framers(opts.retryMs)
  }

  /** Open streams. */
  get size(): number {
    return this.#router.size
  }

  /** Users with at least one open stream. */
  get users(): number {
    return this.#router.users
  }

  /** Open streams of one user. */
  countOf(userId: string): number {
    return this.#router.streamsOf(userId)?.size ?? 0
  }

  /** Streams in the heartbeat groups (equal to `size` unless a close was missed). */
  get beating(): number {
    let n = 0
    for (const group of this.#beatSlots) n += group.size
    return n
  }

  get pendingExpiries(): number {
    return this.#expiries.size
  }

  /**
   * Registers a held stream: live events for it are queued from now on, and
   * nothing is written until it is positioned (resume.ts), so an event published
   * once the client has seen the head is always delivered. `headers` carries
   * what plugins set on the reply (CORS); `format`, what the request accepts.
   */
  open(res: ServerResponse, userId: string, headers: Headers, expiresAt?: number, format: Format = 'sse'): SseStream | undefined {
    if (this.#closing) {
      this.turnAway(res, headers, format)
      return undefined
    }
    const framer = this.#framers[format]
    const stream = new SseStream(userId, res, headers, this.opts.maxBufferBytes, framer, this.#open, this.#onStreamClose)
    stream.beatSlot = this.#opened++ % BEAT_SLOTS
    this.#beatSlots[stream.beatSlot]?.add(stream)
    this.#router.add(userId, stream)
    this.stats.opened++
    if (expiresAt !== undefined) {
      stream.deadline = expiresAt
      this.#expiries.add(stream)
    }
    this.emit('open', stream)
    return stream
  }

  /** True once shutdown has begun. */
  get closing(): boolean {
    return this.#closing
  }

  /**
   * While shutting down: a well-formed, empty stream that tells the client when
   * to come back (to another instance, behind a load balancer). A 503 here would
   * make a plain EventSource stop reconnecting for good.
   */
  turnAway(res: ServerResponse, headers: Headers, format: Format = 'sse'): void {
    const framer = this.#framers[format]
    this.#writeHead(res, headers, framer)
    res.end(framer.retry)
  }

  #open = (res: ServerResponse, headers: Headers, framer: Framer): void => {
    this.#writeHead(res, headers, framer)
    // Out now, before the stream writes straight to the socket (stream.ts):
    // Node 24 holds every write of a chunked response until the next tick
    // unless it is uncorked, and would send the head after the first frames.
    res.cork()
    res.write(framer.hello)
    res.uncork()
  }

  #writeHead(res: ServerResponse, headers: Headers, framer: Framer): void {
    res.writeHead(200, {
      ...headers,
      'content-type': framer.contentType,
      'cache-control': 'no-cache, no-transform',
      // nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      // The connection ends with the stream (stream.ts, #close). Said up front,
      // so that a keep-alive client (Node's agent, a requests.Session, a pooling
      // proxy) does not put it back in its pool and send its next request on a
      // socket being closed ("socket hang up"). Hop-by-hop: nginx keeps its own
      // client connection open, and simply does not reuse this upstream one.
      connection: 'close',
    })
  }

  /** Writes a stored event to every stream of its recipient that does not have it yet. */
  deliverStored(recipient: string, event: Framed): number {
    const streams = this.#router.streamsOf(recipient)
    if (streams === undefined) return 0
    let n = 0
    for (const stream of streams) {
      stream.sendStored(event)
      n++
    }
    this.stats.deliveries += n
    return n
  }

  /** Every open stream (to catch up after an outage). */
  streams(): IterableIterator<SseStream> {
    return this.#router.all()
  }

  /** The open streams of some users (null: every open stream), as a list: callers may close some. */
  streamsOf(users: readonly string[] | null): SseStream[] {
    if (users === null) return [...this.#router.all()]
    const list: SseStream[] = []
    for (const user of users) {
      const streams = this.#router.streamsOf(user)
      if (streams !== undefined) list.push(...streams)
    }
    return list
  }

  /** Writes one ready-made frame to every stream of each recipient. */
  deliver(recipients: readonly string[], frame: Buffer): number {
    let n = 0
    for (const userId of recipients) {
      const streams = this.#router.streamsOf(userId)
      if (streams === undefined) continue
      for (const stream of streams) {
        stream.send(frame)
        n++
      }
    }
    this.stats.deliveries += n
    return n
  }

  /**
   * Ends every stream with a retry hint and refuses further opens. Resolves when
   * every connection has closed, or after `graceMs`, when the stragglers (peers
   * that stopped reading) are destroyed so they cannot hold shutdown up.
   */
  async closeAll(graceMs: number): Promise<void> {
    this.#closing = true
    clearInterval(this.#heartbeat)
    this.#expiries.clear()
    // One buffer per format for every stream: framed once, and chunked once (stream.ts).
    const sockets: Socket[] = []
    for (const stream of [...this.#router.all()]) {
      const socket = stream.socket
      stream.end('shutdown')
      if (socket !== null && !socket.destroyed) sockets.push(socket)
    }
    if (sockets.length === 0) return
    await new Promise<void>((resolve) => {
      let open = sockets.length
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy()
        resolve()
      }, graceMs)
      for (const socket of sockets) {
        socket.once('close', () => {
          if (--open > 0) return
          clearTimeout(timer)
          resolve()
        })
      }
    })
  }

  #beat = (): void => {
    const group = this.#beatSlots[this.#tick++ % BEAT_SLOTS] ?? []
    // Held streams too (catching up, or waiting out an outage), once their head is out.
    for (const stream of group) stream.beat()
  }

  #onStreamClose = (stream: SseStream, reason: CloseReason): void => {
    this.#router.remove(stream.userId, stream)
    this.#beatSlots[stream.beatSlot]?.delete(stream)
    this.#expiries.remove(stream)
    this.stats.closed[reason]++
    this.emit('close', stream, reason)
  }
}
