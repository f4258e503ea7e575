// The HTTP client of the auth adapters (upstream, introspection): undici's
// dispatch API on a pool of kept-alive connections to the auth server.
//
// Chosen over the global fetch (the same undici underneath) and over
// undici.request for cost: fetch's WHATWG layer (Request/Response objects,
// header guards, web streams) took about 200 µs of CPU per check here,
// undici.request about 55 µs, and most of what is left of that is the
// Readable stream and async resource request() builds around each answer,
// which an answer of a few hundred bytes does not need (npm run
// bench:auth-client). In a reconnect storm every connect is one check.
// Nothing here follows redirects: a redirect would replay the credentials
// elsewhere; it is answered as the status it is.
import { Agent, type Dispatcher } from 'undici'

/** Largest answer read; anything bigger is treated as a broken auth server. */
export const MAX_ANSWER_BYTES = 64 * 1024

export interface AuthRequest {
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}

export interface AuthAnswer {
  status: number
  /** The body parsed as JSON, read up to MAX_ANSWER_BYTES; rejects on anything else. */
  json(): Promise<unknown>
  /** Lets the connection go back to the pool if the body was not read to its end. */
  discard(): Promise<void>
}

/** One auth server's URL (upstream or introspection endpoint). */
export interface AuthHttp {
  /** Sends one request to it; rejects when it cannot be reached or `signal` aborts first. */
  send(request: AuthRequest, signal: AbortSignal): Promise<AuthAnswer>
  close(): Promise<void>
}

/** Requests to `url` on a pool of at most `connections` sockets, kept alive between checks. */
export function createAuthHttp(url: string, connections: number): AuthHttp {
  const agent = new Agent({ connections })
  const { origin, pathname, search } = new URL(url)
  const path = `${pathname}${search}`
  return {
    send(request, signal) {
      return new Promise<AuthAnswer>((resolve, reject) => {
        const exchange = new Exchange(signal, resolve, reject)
        agent.dispatch({ origin, path, method: request.method, headers: request.headers, body: request.body }, exchange)
      })
    },
    close: () => agent.close(),
  }
}

/**
 * One request and its answer, as undici's dispatch handler. The answer is
 * given at its status line; its body (at most MAX_ANSWER_BYTES, else the
 * connection is dropped) is collected as it comes, for json().
 */
class Exchange implements Dispatcher.DispatchHandler, AuthAnswer {
  status = 0
  #controller: Dispatcher.DispatchController | undefined
  #chunks: Buffer[] | null = []
  #size = 0
  /** The body ended (true) or failed (its error); undefined while it comes. */
  #ended: true | Error | undefined
  #reader: { resolve: (body: unknown) => void; reject: (err: Error) => void } | undefined

  constructor(
    private readonly signal: AbortSignal,
    private readonly resolve: (answer: AuthAnswer) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.signal.aborted) controller.abort(this.signal.reason as Error)
    else this.signal.addEventListener('abort', this.#onAbort, { once: true })
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number): void {
    // 1xx answers are informational; the real one follows.
    if (status < 200) return
    this.status = status
    this.resolve(this)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length
    if (this.#size > MAX_ANSWER_BYTES) {
      // Dropping the connection is cheaper than reading a broken server's answer to its end.
      controller.abort(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`))
      return
    }
    this.#chunks?.push(chunk)
  }

  onResponseEnd(): void {
    this.#finish(true)
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finish(err)
    // No status line yet (status 0): the request itself failed.
    if (this.status === 0) this.reject(err)
  }

  json(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject }
      this.#settle()
    })
  }

  async discard(): Promise<void> {
    // The rest of the body is read and dropped: the connection then goes back
    // to the pool (a body over the bound closes it instead).
    this.#chunks = null
  }

  #onAbort = (): void => {
    this.#controller?.abort(this.signal.reason as Error)
  }

  #finish(result: true | Error): void {
    if (this.#ended !== undefined) return
    this.#ended = result
    this.signal.removeEventListener('abort', this.#onAbort)
    this.#settle()
  }

  /** Answers json() once both it was asked for and the body has ended. */
  #settle(): void {
    const reader = this.#reader
    if (reader === undefined || this.#ended === undefined) return
    this.#reader = undefined
    if (this.#ended !== true) {
      reader.reject(this.#ended)
      return
    }
    try {
      reader.resolve(this.#parse())
    } catch (err) {
      reader.reject(err as Error)
    }
  }

  #parse(): unknown {
    const chunks = this.#chunks ?? []
    return JSON.parse((chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)).toString('utf8'))
  }
}
