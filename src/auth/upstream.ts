// Upstream mode: ask an HTTP auth server who owns a token. Positive answers are
// cached under a hash of the token (the raw token is never stored or logged);
// concurrent checks of one token share a single call. The global fetch (undici)
// keeps upstream connections alive between calls.
import { createHash } from 'node:crypto'
import { errors, isClientError } from '../errors.js'
import type { LogLimiter } from '../log-limiter.js'
import { normalizeRecipient } from '../recipient.js'
import type { Principal, Verifier } from './principal.js'
import { TtlCache } from './ttl-cache.js'

export interface UpstreamOptions {
  url: string
  userField: string
  timeoutMs: number
  cacheTtlMs: number
  fetch?: typeof fetch
  now?: () => number
  logs: LogLimiter
}

/** Cached principals at most; the oldest is evicted first. */
const CACHE_MAX_ENTRIES = 50_000
/** Largest upstream answer read; anything bigger is treated as a broken upstream. */
const MAX_ANSWER_BYTES = 64 * 1024

export function createUpstreamVerifier(opts: UpstreamOptions): Verifier {
  const doFetch = opts.fetch ?? fetch
  const cache = new TtlCache<Principal>(opts.cacheTtlMs, CACHE_MAX_ENTRIES, opts.now)
  const inFlight = new Map<string, Promise<Principal>>()

  return async function verifyWithUpstream(token: string): Promise<Principal> {
    const key = createHash('sha256').update(token).digest('base64url')
    const cached = cache.get(key)
    if (cached !== undefined) return cached
    let pending = inFlight.get(key)
    if (pending === undefined) {
      // The shared call fills the cache once, however many requests wait on it.
      pending = ask(token)
        .then((principal) => {
          cache.set(key, principal)
          return principal
        })
        .finally(() => inFlight.delete(key))
      inFlight.set(key, pending)
    }
    return pending
  }

  async function ask(token: string): Promise<Principal> {
    let res: Response
    try {
      res = await doFetch(opts.url, {
        method: 'GET',
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(opts.timeoutMs),
      })
    } catch (err) {
      opts.logs.write('warn', 'upstream-unreachable', { err: describe(err) }, 'auth upstream unreachable or timed out')
      throw errors.authUnavailable()
    }
    try {
      if (res.status === 400 || res.status === 401 || res.status === 403) throw errors.tokenRejected()
      if (res.status < 200 || res.status > 299) {
        opts.logs.write('warn', 'upstream-status', { status: res.status }, 'auth upstream answered with an error status')
        throw errors.authUnavailable()
      }
      const userId = normalizeRecipient(field(await readJson(res), opts.userField))
      if (userId === undefined) {
        opts.logs.write('error', 'upstream-contract', { field: opts.userField },
          'auth upstream answered 2xx without a usable user id field')
        throw errors.authUnavailable()
      }
      return { userId }
    } catch (err) {
      if (isClientError(err)) throw err
      opts.logs.write('warn', 'upstream-body', { err: describe(err) }, 'auth upstream answer could not be read')
      throw errors.authUnavailable()
    } finally {
      // Release the connection to the keep-alive pool even when the body was not read.
      if (res.bodyUsed === false) await res.body?.cancel().catch(() => {})
    }
  }
}

async function readJson(res: Response): Promise<unknown> {
  const declared = Number(res.headers.get('content-length') ?? 0)
  if (declared > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
  const chunks: Uint8Array[] = []
  let size = 0
  if (res.body === null) throw new Error('empty answer')
  for await (const chunk of res.body) {
    size += chunk.byteLength
    if (size > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
    chunks.push(chunk)
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function field(body: unknown, name: string): unknown {
  return body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined
}

// Only the error's name, code and message: undici errors can carry request
// objects, and the request carries the token.
function describe(err: unknown): Record<string, unknown> {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } }
  return { type: e?.name, code: e?.code ?? e?.cause?.code, message: e?.cause?.message ?? e?.message }
}
