// Positive answers of a remote verifier (upstream, introspection), cached under
// a hash of the token (the raw token is never stored), and single-flight:
// concurrent checks of one token share one call to the auth server. Refusals
// and failures are never kept: a token refused once may be valid a moment later
// (just issued), and an outage must not outlive itself.
import { createHash } from 'node:crypto'
import type { CacheLookup, Principal, Verifier } from './principal.js'
import { TtlCache } from './ttl-cache.js'

export interface CacheOptions {
  /** How long a positive answer is kept; 0 disables the cache (single-flight stays). */
  ttlMs: number
  /** Clock, epoch milliseconds. */
  now?: () => number
  /** Told how each lookup was answered (metrics, tests). */
  onCacheLookup?: (result: CacheLookup) => void
}

/** Cached principals at most; the oldest is evicted first. */
const CACHE_MAX_ENTRIES = 50_000

export function withCache(ask: Verifier, opts: CacheOptions): Verifier {
  const now = opts.now ?? Date.now
  const cache = new TtlCache<Principal>(CACHE_MAX_ENTRIES, now)
  const inFlight = new Map<string, Promise<Principal>>()
  const report = opts.onCacheLookup ?? (() => {})

  return async function verifyCached(token: string): Promise<Principal> {
    const key = createHash('sha256').update(token).digest('base64url')
    const cached = cache.get(key)
    if (cached !== undefined) {
      report('hit')
      return cached
    }
    const pending = inFlight.get(key)
    if (pending !== undefined) {
      report('shared')
      return pending
    }
    report('miss')
    // The shared call fills the cache once, however many requests wait on it.
    const call = ask(token)
      .then((principal) => {
        cache.set(key, principal, lifetime(principal))
        return principal
      })
      .finally(() => inFlight.delete(key))
    inFlight.set(key, call)
    return call
  }

  // A cached answer must not outlive the credentials: a token expiring in 5 s
  // is kept 5 s, not AUTH_CACHE_TTL_MS.
  function lifetime(principal: Principal): number {
    return principal.expiresAt === undefined ? opts.ttlMs : Math.min(opts.ttlMs, principal.expiresAt - now())
  }
}
