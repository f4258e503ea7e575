// One open event stream: writes frames straight to the response, honours
// backpressure and closes itself when the client cannot keep up. A stream is
// born "held": nothing is written, live events are queued, until its place in
// the recipient's history is known (see resume.ts); then the head goes out,
// then what it missed, then what was queued, deduplicated by event id.
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { isAfter, type Position, START } from '../history/event-id.js'
import type { Framed, Outcome } from '../history/replay.js'
import type { Scheduled } from './deadlines.js'
import { encodeChunk } from './frame.js'
import type { Framer } from './framer.js'

export type CloseReason = 'client' | 'slow' | 'expired' | 'shutdown' | 'unavailable'

export type Headers = Record<string, string | string[] | number>

/** Writes a stream's response head and first bytes; one per hub, shared by its streams. */
export type Opener = (res: ServerResponse, headers: Headers, framer: Framer) => void

/** The frame a stream the service ends gets last, by why it ends. */
const LAST = { expired: 'authExpired', shutdown: 'retry', unavailable: 'retry' } as const
// After the head, frames go straight to the socket as HTTP/1.1 chunks (what
// ServerResponse would do with three writes and two string conversions per
// frame). An event is written to all its recipients' streams one after the
// other: the last frame's chunk is kept, so each is wrapped once, not once per stream.
let lastFrame: Buffer | undefined
let lastChunk: Buffer = Buffer.alloc(0)
function asChunk(frame: Buffer): Buffer {
  if (frame !== lastFrame) {
    lastChunk = encodeChunk(frame)
    lastFrame = frame
  }
  return lastChunk
}

export class SseStream implements Scheduled {
  deadline = Infinity
  heapIndex = -1
  /** Which of the hub's heartbeat groups this stream is in. */
  beatSlot = 0
  closed = false
  /** The newest stored event this stream has, or where it joined the history. */
  position: Readonly<Position> = START
  #headers: Headers | null
  /** The socket, once the head is out on a chunked response (HTTP/1.1); else writes go through the response. */
  #direct: Socket | null = null
  /** Something was written since the last heartbeat check. */
  #wrote = false
  #pending: (Buffer | Framed)[] | null = []
  #pendingBytes = 0

  constructor(
    readonly userId: string,
    private readonly res: ServerResponse,
    headers: Headers,
    private readonly maxBufferBytes: number,
    /** SSE or NDJSON, as the request asked (accept.ts). */
    readonly framer: Framer,
    private readonly opener: Opener,
    private readonly onClose: (stream: SseStream, reason: CloseReason) => void,
  ) {
    this.#headers = headers
    res.once('close', this.#onResClose)
  }

  get socket(): Socket | null {
    return this.res.socket
  }

  /** True while live events are queued rather than written. */
  get held(): boolean {
    return this.#pending !== null
  }

  /**
   * Writes one whole frame that carries no id (a plain event, a heartbeat). A
   * false return from write() means the socket is behind; what is queued is
   * bounded: past maxBufferBytes the stream is destroyed rather than buffered
   * without limit.
   */
  send(sse: Buffer): void {
    if (this.closed) return
    const frame = this.framer.event(sse)
    if (this.#pending !== null) this.#queue(frame, frame.length)
    else this.#write(frame)
  }

  /**
   * A heartbeat, checked once per interval: written only if nothing was since
   * the last check (an active stream is not idle; a stream is thus never
   * silent for two intervals). Written even while held (it is no event), once
   * the head is out.
   */
  beat(): void {
    if (this.closed || this.#headers !== null) return
    if (this.#wrote) {
      this.#wrote = false
      return
    }
    this.#write(this.framer.heartbeat)
    this.#wrote = false
  }

  /** Writes a stored event unless this stream already has it. */
  sendStored(event: Framed): void {
    if (this.closed) return
    const framed = this.#reframe(event)
    if (this.#pending !== null) this.#queue(framed, framed.frame.length)
    else this.#writeStored(framed)
  }

  /** Queues live events from now on (while the history is read again). */
  hold(): void {
    if (this.#pending === null) this.#pending = []
  }

  /** Writes the head (the first time), then what a history read decided. Still held. */
  apply(outcome: Outcome): void {
    if (this.closed) return
    // The head, the hello and the replay leave in one write to the kernel, not
    // one per frame: in a reconnect storm that is one syscall per stream instead of ten.
    const socket = this.res.socket
    socket?.cork()
    this.#open()
    if (outcome.resync) {
      this.#write(this.framer.resync)
      this.position = outcome.position
    } else {
      for (const event of outcome.replay) this.#writeStored(this.#reframe(event))
      if (isAfter(outcome.position, this.position)) this.position = outcome.position
    }
    if (outcome.announce === true && !this.closed) this.#write(this.framer.position(this.position, this.userId))
    socket?.uncork()
  }

  /** Writes what was queued, in order, and goes live. */
  release(): void {
    const pending = this.#pending
    if (pending === null) return
    this.#pending = null
    this.#pendingBytes = 0
    const socket = this.#direct
    socket?.cork()
    for (const item of pending) {
      if (this.closed) break
      if (Buffer.isBuffer(item)) this.#write(item)
      else this.#writeStored(item)
    }
    socket?.uncork()
  }

  /** Sends the last frame of `reason` (auth-expired, or a retry hint) and ends the response and the connection. */
  end(reason: Exclude<CloseReason, 'client' | 'slow'>): void {
    if (this.closed) return
    this.#open()
    this.#write(this.framer[LAST[reason]])
    if (this.closed) return
    this.#close(reason, false)
  }

  #open(): void {
    if (this.#headers === null) return
    this.opener(this.res, this.#headers, this.framer)
    this.#headers = null
    // Node decides on chunked encoding as the head goes out; HTTP/1.0 gets a plain body.
    if ((this.res as ServerResponse & { chunkedEncoding?: boolean }).chunkedEncoding === true) this.#direct = this.res.socket
  }

  /** A stored event in this stream's format (the same object for SSE). */
  #reframe(event: Framed): Framed {
    const frame = this.framer.event(event.frame)
    return frame === event.frame ? event : { position: event.position, frame }
  }

  #writeStored(event: Framed): void {
    if (!isAfter(event.position, this.position)) return
    this.position = event.position
    this.#write(event.frame)
  }

  #write(frame: Buffer): void {
    this.#wrote = true
    const socket = this.#direct
    if (socket === null) {
      this.res.write(frame)
      if (this.res.writableLength > this.maxBufferBytes) this.#close('slow', true)
      return
    }
    socket.write(asChunk(frame))
    if (socket.writableLength > this.maxBufferBytes) this.#close('slow', true)
  }

  #queue(item: Buffer | Framed, bytes: number): void {
    this.#pendingBytes += bytes
    if (this.#pendingBytes > this.maxBufferBytes) this.#close('slow', true)
    else this.#pending?.push(item)
  }

  #onResClose = (): void => {
    this.#close('client', true)
  }

  #close(reason: CloseReason, destroy: boolean): void {
    if (this.closed) return
    this.closed = true
    this.#pending = null
    if (destroy) {
      // Drop what is queued: the peer is gone or cannot keep up.
      this.res.destroy()
    } else {
      this.res.end()
      // SSE connections are never reused for another request, and the head
      // said so (`Connection: close`, hub.ts): the socket closes once the last
      // chunk is flushed, which lets the server drain promptly.
      this.res.socket?.end()
    }
    this.onClose(this, reason)
  }
}
