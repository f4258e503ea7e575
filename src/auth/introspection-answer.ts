// What an OAuth 2.0 Token Introspection answer (RFC 7662) means for a connect.
// Pure: no I/O, the clock is an argument.
import { normalizeRecipient } from '../recipient.js'
import { member } from './http-json.js'
import type { Principal } from './principal.js'

/** Why an active-or-not answer still does not let the token in. */
export type Refusal =
  | 'inactive'
  | 'expired'
  /** No token_type: how oidc-provider and Spring Authorization Server describe refresh tokens. */
  | 'untyped'
  | 'not-access-token'
  | 'sender-constrained'
  | 'wrong-audience'
  | 'no-user'

export type Verdict = { principal: Principal } | { refused: Refusal }

/**
 * Judges a 200 answer. Throws when the answer breaks RFC 7662 itself (no
 * boolean `active`, a non-numeric `exp`): then the provider, not the token, is at fault.
 */
export interface JudgeOptions {
  /** Member holding the user id. */
  userClaim: string
  /** When set, `aud` (a string or an array) must contain it. */
  audience?: string
}

export function judgeIntrospection(body: unknown, opts: JudgeOptions, nowMs: number): Verdict {
  const active = member(body, 'active')
  if (typeof active !== 'boolean') throw new Error('introspection answer has no boolean "active" member')
  if (!active) return { refused: 'inactive' }

  const exp = member(body, 'exp') ?? undefined
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) {
    throw new Error('introspection answer has a non-numeric "exp"')
  }
  // The provider said active, but by our clock the token is over (skew, or an
  // answer that spent its time in flight): a stream would end at once anyway.
  if (exp !== undefined && exp * 1000 <= nowMs) return { refused: 'expired' }

  // RFC 7662 makes token_type optional, but a refresh token is introspected as
  // active too, and oidc-provider and Spring Authorization Server tell it from an
  // access token only by leaving token_type out. A refresh token is long-lived
  // and meant for the token endpoint alone; it must not open streams, so an
  // answer has to say "Bearer" (or, ORY Hydra's way, token_use "access_token").
  // That also refuses "DPoP": a DPoP-bound token is only good with a proof of
  // possession this service cannot check.
  const type = member(body, 'token_type') ?? undefined
  const use = member(body, 'token_use') ?? undefined
  if (use !== undefined && use !== 'access_token') return { refused: 'not-access-token' }
  if (type === undefined && use === undefined) return { refused: 'untyped' }
  if (type !== undefined && (typeof type !== 'string' || type.toLowerCase() !== 'bearer')) return { refused: 'not-access-token' }
  // A certificate-bound token (RFC 8705, cnf.x5t#S256) must be checked against
  // the client's TLS certificate, which this service does not see.
  if ((member(body, 'cnf') ?? undefined) !== undefined) return { refused: 'sender-constrained' }

  if (opts.audience !== undefined && !audienceHas(member(body, 'aud'), opts.audience)) return { refused: 'wrong-audience' }

  const userId = normalizeRecipient(member(body, opts.userClaim))
  if (userId === undefined) return { refused: 'no-user' }
  return { principal: exp === undefined ? { userId } : { userId, expiresAt: exp * 1000 } }
}

function audienceHas(aud: unknown, wanted: string): boolean {
  return aud === wanted || (Array.isArray(aud) && aud.includes(wanted))
}
