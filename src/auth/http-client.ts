// The HTTP client of the auth adapters (upstream, introspection): undici's
// request API on a pool of kept-alive connections to the auth server.
//
// Chosen over the global fetch (the same undici underneath) for cost: fetch's
// WHATWG layer (Request/Response objects, header guards, web streams) took
// about 200 µs of CPU per check here, undici.request about 55 µs (npm run
// bench:auth-client). In a reconnect storm every connect is one check.
// undici.request never follows redirects: a redirect would replay the
// credentials elsewhere; it is answered as the status it is.
import { Agent } from 'undici'

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
    async send(request, signal) {
      const res = await agent.request({
        origin,
        path,
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal,
      })
      const body = res.body
      return {
        status: res.statusCode,
        async json() {
          const declared = Number(res.headers['content-length'] ?? 0)
          if (declared > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
          const chunks: Buffer[] = []
          let size = 0
          for await (const chunk of body as AsyncIterable<Buffer>) {
            size += chunk.length
            // Leaving the loop destroys the body, and with it that connection.
            if (size > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
            chunks.push(chunk)
          }
          return JSON.parse(Buffer.concat(chunks).toString('utf8'))
        },
        async discard() {
          // A body left unread keeps its connection busy; dump() drains a small
          // one (and closes the connection of a large one).
          await body.dump().catch(() => {})
        },
      }
    },
    close: () => agent.close(),
  }
}
