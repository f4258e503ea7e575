// Introspection mode: ask the identity provider about each token through its
// RFC 7662 endpoint, authenticated as this service's own client. Positive
// answers are cached (never past the token's exp) and concurrent checks of one
// token share one call (cached.ts); connections are kept alive (http-client.ts).
import type { AuthConfig } from '../config.js'
import { errors, isClientError } from '../errors.js'
import type { LogLimiter } from '../log-limiter.js'
import { withCache } from './cached.js'
import type { AuthAnswer, AuthHttp } from './http-client.js'
import { describe, member } from './http-json.js'
import { judgeIntrospection } from './introspection-answer.js'
import type { CacheLookup, Principal, Verifier } from './principal.js'
import { boundedCheck } from './slots.js'

type IntrospectionConfig = Extract<AuthConfig, { mode: 'introspection' }>

export interface IntrospectionOptions extends Omit<IntrospectionConfig, 'mode'> {
  http: AuthHttp
  now?: () => number
  onCacheLookup?: (result: CacheLookup) => void
  logs: LogLimiter
}

/**
 * client_secret_basic (RFC 6749 section 2.3.1): id and secret are each
 * form-urlencoded before being joined and base64-encoded, so a secret holding
 * `:`, `+` or `%` reaches the provider intact.
 */
export function basicCredentials(clientId: string, clientSecret: string): string {
  const encode = (s: string) => new URLSearchParams([['', s]]).toString().slice(1)
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`
}

export function createIntrospectionVerifier(opts: IntrospectionOptions): Verifier {
  const now = opts.now ?? Date.now
  const { logs } = opts
  const headers = {
    authorization: basicCredentials(opts.clientId, opts.clientSecret),
    accept: 'application/json',
    'content-type': 'application/x-www-form-urlencoded',
  }

  const unreachable = (err: unknown): Error => {
    logs.write('warn', 'introspection-unreachable', { err: describe(err) }, 'introspection endpoint unreachable or timed out')
    return errors.authUnavailable()
  }

  async function askInSlot(token: string, signal: AbortSignal): Promise<Principal> {
    let res: AuthAnswer
    try {
      // Redirects are not followed (they would replay our client credentials
      // elsewhere): a moved endpoint is a configuration error, reported below by its status.
      const body = new URLSearchParams({ token, token_type_hint: 'access_token' }).toString()
      res = await opts.http.send({ method: 'POST', headers, body }, signal)
    } catch (err) {
      throw unreachable(err)
    }
    try {
      return await answer(res)
    } catch (err) {
      if (isClientError(err)) throw err
      logs.write('warn', 'introspection-body', { err: describe(err) }, 'introspection answer could not be read')
      throw errors.authUnavailable()
    } finally {
      await res.discard()
    }
  }

  async function answer(res: AuthAnswer): Promise<Principal> {
    if (res.status === 401 || res.status === 403) {
      // The provider refused *us*: every connect fails until the config is fixed.
      logs.write('error', 'introspection-client-refused', { status: res.status, clientId: opts.clientId },
        'introspection endpoint refused this service\'s client credentials: check INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET')
      throw errors.authUnavailable()
    }
    if (res.status === 400 && member(await res.json(), 'error') === 'unsupported_token_type') {
      // oidc-provider's answer for a JWT it will not introspect: about the token, not us.
      throw errors.tokenRejected()
    }
    if (res.status !== 200) {
      logs.write('warn', 'introspection-status', { status: res.status }, 'introspection endpoint answered with an unexpected status')
      throw errors.authUnavailable()
    }
    const verdict = judgeIntrospection(await res.json(), opts, now())
    if ('principal' in verdict) return verdict.principal
    if (verdict.refused === 'no-user') {
      // The provider vouches for the token, so this is a 401, not an outage:
      // a client-credentials token has no user, and a 503 would have the browser
      // retry a token that can never work. Logged as an error because the same
      // refusal for every token means INTROSPECTION_USER_CLAIM names a member
      // the provider does not send.
      logs.write('error', 'introspection-no-user', { claim: opts.userClaim },
        'active token without a usable user id in the configured claim; refused')
    } else if (verdict.refused === 'untyped') {
      // Every token refused this way means a provider that names no kind at
      // all (Authentik): the operator must choose, knowing what accept admits.
      logs.write('warn', 'introspection-untyped', {},
        'active token without token_type, typ or token_use (a refresh token, or a provider that never names the kind); refused: see INTROSPECTION_UNTYPED_TOKENS')
    }
    throw errors.tokenRejected()
  }

  return withCache(boundedCheck(opts.timeoutMs, askInSlot, unreachable), { ttlMs: opts.cacheTtlMs, now, onCacheLookup: opts.onCacheLookup })
}
