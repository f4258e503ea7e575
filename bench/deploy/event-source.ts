// One browser's EventSource behind a balancer, on a raw socket: it holds one
// stream, and when the stream ends it waits the `retry:` the service sent and
// reconnects with Last-Event-ID, to the port the balancer picks. Every
// connection attempt is kept (where, when dialled, when live, when ended, how
// it ended), so the deploy's figures are computed afterwards from what each
// client saw, not sampled while it happens.
import { connect } from 'node:net'
import { type SseEvent, type SseHooks, SseReader } from '../load/sse-reader.js'

/** How an attempt ended: a stream that was live, or why it never was. */
export type Outcome = 'open' | 'live' | 'turned-away' | 'refused' | 'timeout' | 'closed' | `status ${number}` | `error ${string}`

/** One connection attempt; times in ms after the run's t0. */
export interface Attempt {
  port: number
  dialAt: number
  /** When the service's `: connected` arrived: the stream is live (positioned, replay on its way). */
  liveAt: number | null
  endAt: number | null
  outcome: Outcome
}

export interface ClientHooks {
  now(): number
  /** The balancer: the port of a new connect, or of the retry of one that `failed` there. */
  next(failed?: number): number
  event(c: Client, e: SseEvent): void
  /** The attempt went live, or ended (`attempt.outcome` says how). */
  change(c: Client, attempt: Attempt): void
}

/**
 * After a connect that gave no stream (refused, an error answer, no answer):
 * try the next instance after this. A browser's EventSource would wait its
 * reconnection time, or give up for good on a non-200; here the client stands
 * in for nginx too, which tries the next upstream at once (proxy_next_upstream).
 */
export const BACKOFF_MS = 250
/** A connect without a response head after this long is given up. */
export const HEAD_TIMEOUT_MS = 15_000
/** The reconnection time before the service has sent one (browsers use about 3 s). */
const DEFAULT_RETRY_MS = 3000

/** One connection's reader: the HTTP head, then SSE. */
class Conn extends SseReader<Conn> {
  live = false
  error: string | undefined
  #tail = ''

  constructor(readonly client: Client) {
    super(HOOKS)
  }

  // SseReader reports events and comments, not the two fields that outlive a
  // connection: every complete line goes to the client first.
  override sse(text: string): void {
    let start = 0
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.client.line(this.#tail + text.slice(start, nl))
      this.#tail = ''
      start = nl + 1
    }
    this.#tail += text.slice(start)
    super.sse(text)
  }
}

const HOOKS: SseHooks<Conn> = {
  comment: (c, text) => {
    if (text === 'connected') c.client.wentLive(c)
  },
  event: (c, e) => c.client.hooks.event(c.client, e),
}

export class Client {
  /** [spec] The last event ID string: sent as Last-Event-ID on reconnect. */
  lastEventId = ''
  /** [spec] The last event ID buffer, made the last event ID string when an event is dispatched. */
  #idBuffer = ''
  /**
   * [spec] The reconnection time: the last `retry:` the service sent, taken as
   * is (the drain's hint may differ from the connect's, with jitter: never shortened).
   */
  retryMs = DEFAULT_RETRY_MS
  readonly timeline: Attempt[] = []
  #stopped = false
  #destroy: (() => void) | undefined

  constructor(
    readonly user: string,
    readonly hooks: ClientHooks,
  ) {}

  get live(): boolean {
    return this.timeline.at(-1)?.liveAt != null && this.timeline.at(-1)?.endAt === null
  }

  /** Connects to `port`; after that, it reconnects by itself until stopped. */
  dial(port: number): void {
    if (this.#stopped) return
    const attempt: Attempt = { port, dialAt: this.hooks.now(), liveAt: null, endAt: null, outcome: 'open' }
    this.timeline.push(attempt)
    const conn = new Conn(this)
    // Not bound to a source address (see storm.ts): the kernel picks the port.
    const socket = connect({ port, host: '127.0.0.1' })
    this.#destroy = () => socket.destroy()
    const timer = setTimeout(() => {
      if (conn.status !== 0) return
      conn.error ??= 'timeout'
      socket.destroy()
    }, HEAD_TIMEOUT_MS)
    socket.setEncoding('latin1')
    socket.setNoDelay(true)
    socket.once('connect', () => {
      const resume = this.lastEventId === '' ? '' : `Last-Event-ID: ${this.lastEventId}\r\n`
      socket.write(`GET /notify HTTP/1.1\r\nHost: deploy\r\nAccept: text/event-stream\r\nAuthorization: Bearer user-${this.user}\r\n${resume}\r\n`)
    })
    socket.on('data', (d: string) => conn.feed(d))
    socket.on('error', (err: Error & { code?: string }) => {
      conn.error ??= err.code ?? err.message
    })
    socket.once('close', () => {
      clearTimeout(timer)
      this.#ended(attempt, conn)
    })
  }

  /** No more reconnects; closes the stream. */
  stop(): void {
    this.#stopped = true
    this.#destroy?.()
  }

  /** [spec] WHATWG HTML 9.2.6: `id` and `retry`, and the blank line that dispatches. */
  line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (line === '') {
      this.lastEventId = this.#idBuffer
      return
    }
    const colon = line.indexOf(':')
    if (colon === 0) return
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'id' && !value.includes('\0')) this.#idBuffer = value
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value)
  }

  wentLive(conn: Conn): void {
    const attempt = this.timeline.at(-1) as Attempt
    conn.live = true
    attempt.liveAt = this.hooks.now()
    this.hooks.change(this, attempt)
  }

  #ended(attempt: Attempt, conn: Conn): void {
    attempt.endAt = this.hooks.now()
    attempt.outcome = outcomeOf(conn)
    this.hooks.change(this, attempt)
    if (this.#stopped) return
    // [spec] A stream that ends is reestablished after the reconnection time,
    // whether it was live or turned away by a draining instance (200, `retry:`
    // only); a connect that gave no stream tries the next instance sooner.
    const stream = conn.status === 200
    setTimeout(() => this.dial(stream ? this.hooks.next() : this.hooks.next(attempt.port)), stream ? this.retryMs : BACKOFF_MS)
  }
}

function outcomeOf(conn: Conn): Outcome {
  if (conn.live) return 'live'
  if (conn.status === 200) return 'turned-away'
  if (conn.status !== 0) return `status ${conn.status}`
  if (conn.error === 'ECONNREFUSED') return 'refused'
  if (conn.error === 'timeout') return 'timeout'
  return conn.error === undefined ? 'closed' : `error ${conn.error}`
}
