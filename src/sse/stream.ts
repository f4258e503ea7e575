// One open event stream: writes frames straight to the response, honours
// backpressure and closes itself when the client cannot keep up.
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Scheduled } from './deadlines.js'

export type CloseReason = 'client' | 'slow' | 'expired' | 'shutdown'

export class SseStream implements Scheduled {
  deadline = Infinity
  heapIndex = -1
  closed = false

  constructor(
    readonly userId: string,
    private readonly res: ServerResponse,
    private readonly maxBufferBytes: number,
    private readonly onClose: (stream: SseStream, reason: CloseReason) => void,
  ) {
    res.once('close', this.#onResClose)
  }

  get socket(): Socket | null {
    return this.res.socket
  }

  /**
   * Writes one whole frame. A false return from write() means the socket is
   * behind; what is queued is bounded: past maxBufferBytes the stream is
   * destroyed rather than buffered without limit.
   */
  send(frame: Buffer | string): void {
    if (this.closed) return
    this.res.write(frame)
    if (this.res.writableLength > this.maxBufferBytes) this.#close('slow', true)
  }

  /** Sends a last frame (if any) and ends the response and the connection. */
  end(reason: Exclude<CloseReason, 'client' | 'slow'>, last?: string): void {
    if (this.closed) return
    if (last !== undefined) this.res.write(last)
    this.#close(reason, false)
  }

  #onResClose = (): void => {
    this.#close('client', true)
  }

  #close(reason: CloseReason, destroy: boolean): void {
    if (this.closed) return
    this.closed = true
    if (destroy) {
      // Drop what is queued: the peer is gone or cannot keep up.
      this.res.destroy()
    } else {
      this.res.end()
      // SSE connections are never reused for another request; closing the
      // socket once the last chunk is flushed lets the server drain promptly.
      this.res.socket?.end()
    }
    this.onClose(this, reason)
  }
}
