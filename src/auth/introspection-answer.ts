// What an OAuth 2.0 Token Introspection answer (RFC 7662) means for a connect.
// Pure: no I/O, the clock is an argument.
import { normalizeRecipient } from '../recipient.js'
import { member } from './http-json.js'
import type { Principal } from './principal.js'

/** Why an active-or-not answer still does not let the token in. */
export type Refusal =
  | 'inactive'
  | 'expired'
  /** No token_type, typ or token_use (and INTROSPECTION_UNTYPED_TOKENS=refuse): how oidc-provider and Spring describe refresh tokens. */
  | 'untyped'
  /** A refresh, ID, offline or unknown kind of token, by any of those members. */
  | 'not-access-token'
  /** DPoP (RFC 9449) or certificate-bound (RFC 8705): good only with a proof this service cannot check. */
  | 'sender-constrained'
  | 'wrong-audience'
  | 'no-user'

export type Verdict = { principal: Principal } | { refused: Refusal }

/** INTROSPECTION_UNTYPED_TOKENS: what an active answer that names no token kind does. */
export type UntypedTokens = 'refuse' | 'accept'

export interface JudgeOptions {
  /** Member holding the user id. */
  userClaim: string
  /** When set, `aud` (a string or an array) must contain it. */
  audience?: string
  /** Default `refuse`. Never admits an answer that names another kind. */
  untypedTokens?: UntypedTokens
}

/**
 * What the answer says the token is. Three members are read, each the way a
 * provider uses it (README, "Introspection mode", has the table):
 *  - `token_use`: Ory Hydra, `access_token` or `refresh_token`. Hydra answers
 *    `token_type: Bearer` for both, so this member must be read and must win.
 *  - `typ`: Keycloak's own claim, `Bearer` for access tokens, `Refresh`,
 *    `Offline` or `ID` for the others; older Keycloak sends nothing else.
 *  - `token_type`: RFC 7662 (optional), a RFC 6749 section 7.1 type, `Bearer`
 *    (case-insensitive); `access_token` / `refresh_token` in Ory Hydra 1.x,
 *    older oidc-provider and Duende IdentityServer; Keycloak copies `typ` into it.
 * Each member present is read alone, and the most cautious reading wins:
 * any member naming another kind refuses, whatever the others say.
 */
export type TokenKind = 'access' | 'bound' | 'other' | 'unnamed'

const ACCESS: Record<'token_use' | 'typ' | 'token_type', readonly string[]> = {
  token_use: ['access_token'],
  typ: ['bearer'],
  token_type: ['bearer', 'access_token'],
}
const CAUTION: readonly TokenKind[] = ['unnamed', 'access', 'bound', 'other']

export function tokenKind(body: unknown): TokenKind {
  let kind: TokenKind = 'unnamed'
  for (const [name, access] of Object.entries(ACCESS)) {
    const value = member(body, name) ?? undefined
    if (value === undefined) continue
    const said = kindOf(typeof value === 'string' ? value.toLowerCase() : undefined, access)
    if (CAUTION.indexOf(said) > CAUTION.indexOf(kind)) kind = said
  }
  return kind
}

function kindOf(value: string | undefined, access: readonly string[]): TokenKind {
  if (value === undefined) return 'other'
  if (access.includes(value)) return 'access'
  // A DPoP-bound access token (Keycloak puts DPoP in typ and token_type, oidc-provider in token_type).
  return value === 'dpop' ? 'bound' : 'other'
}

/**
 * Judges a 200 answer. Throws when the answer breaks RFC 7662 itself (no
 * boolean `active`, a non-numeric `exp`): then the provider, not the token, is at fault.
 * In order: active, exp, the token's kind, sender constraint, audience, user.
 */
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

  // A refresh token is introspected as active too, but it is long-lived and
  // meant for the token endpoint alone: it must not open streams, and neither
  // may an ID token. When the answer names no kind, the setting decides: refuse
  // by default, since oidc-provider and Spring Authorization Server name a
  // refresh token (and Spring an ID token) only by leaving token_type out.
  // Okta is the exception no member can catch: it answers token_type Bearer for
  // refresh tokens too (README: INTROSPECTION_AUDIENCE or INTROSPECTION_USER_CLAIM=uid).
  const kind = tokenKind(body)
  if (kind === 'other') return { refused: 'not-access-token' }
  if (kind === 'bound') return { refused: 'sender-constrained' }
  if (kind === 'unnamed' && opts.untypedTokens !== 'accept') return { refused: 'untyped' }
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
