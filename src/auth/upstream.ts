// Upstream mode: ask an HTTP auth server who owns a token. Positive answers are
// cached and concurrent checks share one call (cached.ts). The connections to
// the upstream are kept alive between calls (http-client.ts).
import { errors, isClientError } from '../errors.js'
import type { LogLimiter } from '../log-limiter.js'
import { normalizeRecipient } from '../recipient.js'
import { withCache } from './cached.js'
import type { AuthAnswer, AuthHttp } from './http-client.js'
import { describe, member } from './http-json.js'
import type { CacheLookup, Principal, Verifier } from './principal.js'
import { boundedCheck } from './slots.js'

export interface UpstreamOptions {
  userField: string
  timeoutMs: number
  cacheTtlMs: number
  http: AuthHttp
  now?: () => number
  onCacheLookup?: (result: CacheLookup) => void
  logs: LogLimiter
}

export function createUpstreamVerifier(opts: UpstreamOptions): Verifier {
  const headers = { accept: 'application/json' }

  const unreachable = (err: unknown): Error => {
    opts.logs.write('warn', 'upstream-unreachable', { err: describe(err) }, 'auth upstream unreachable or timed out')
    return errors.authUnavailable()
  }

  async function askInSlot(token: string, signal: AbortSignal): Promise<Principal> {
    let res: AuthAnswer
    try {
      res = await opts.http.send({ method: 'GET', headers: { ...headers, authorization: `Bearer ${token}` } }, signal)
    } catch (err) {
      throw unreachable(err)
    }
    try {
      if (res.status === 400 || res.status === 401 || res.status === 403) throw errors.tokenRejected()
      if (res.status < 200 || res.status > 299) {
        opts.logs.write('warn', 'upstream-status', { status: res.status }, 'auth upstream answered with an error status')
        throw errors.authUnavailable()
      }
      const userId = normalizeRecipient(member(await res.json(), opts.userField))
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
      await res.discard()
    }
  }

  return withCache(boundedCheck(opts.timeoutMs, askInSlot, unreachable), { ttlMs: opts.cacheTtlMs, now: opts.now, onCacheLookup: opts.onCacheLookup })
}
