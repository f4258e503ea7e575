// JWT mode: verify tokens locally with jose. The algorithm allow-list comes from
// configuration only; `none` cannot be configured and jose refuses it anyway.
import { createPublicKey, type KeyObject } from 'node:crypto'
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose'
import type { AuthConfig } from '../config.js'
import { errors } from '../errors.js'
import type { LogLimiter } from '../log-limiter.js'
import { normalizeRecipient } from '../recipient.js'
import type { Principal, Verifier } from './principal.js'

type JwtConfig = Extract<AuthConfig, { mode: 'jwt' }>

/** Test overrides of the JWKS fetch timing. */
export interface JwksTiming {
  /** Timeout of one JWKS fetch. Default 5000 ms. */
  timeoutMs?: number
  /**
   * Instead of JWT_JWKS_COOLDOWN_MS (config.key.cooldownMs), e.g. 0 (no
   * cooldown, which the setting does not allow) for a test that rotates keys.
   */
  cooldownMs?: number
}

export interface JwtOptions {
  jwks?: JwksTiming
  logs: LogLimiter
}

// Errors that say the token is bad, as opposed to the key source being unreachable.
const TOKEN_FAULTS: ReadonlySet<string> = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
])

export function createJwtVerifier(config: JwtConfig, opts: JwtOptions): Verifier {
  const key = resolveKey(config, opts.jwks ?? {})
  const verifyOptions = {
    algorithms: config.algorithms,
    ...(config.issuer !== undefined && { issuer: config.issuer }),
    ...(config.audience !== undefined && { audience: config.audience }),
  }

  return async function verifyJwt(token: string): Promise<Principal> {
    let payload
    try {
      // Two overloads (static key vs key resolver); the call is the same.
      ;({ payload } =
        typeof key === 'function' ? await jwtVerify(token, key, verifyOptions) : await jwtVerify(token, key, verifyOptions))
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code !== undefined && TOKEN_FAULTS.has(code)) throw errors.tokenRejected()
      // JWKS unreachable, timing out or serving garbage: the token may be fine.
      opts.logs.write('warn', 'jwks-unavailable', { code, message: (err as Error).message }, 'JWT key source unavailable')
      throw errors.authUnavailable()
    }
    const userId = normalizeRecipient(payload[config.userClaim])
    if (userId === undefined) throw errors.tokenRejected()
    return payload.exp !== undefined ? { userId, expiresAt: payload.exp * 1000 } : { userId }
  }
}

function resolveKey(config: JwtConfig, jwks: JwksTiming): Uint8Array | KeyObject | JWTVerifyGetKey {
  switch (config.key.kind) {
    case 'secret':
      return new TextEncoder().encode(config.key.secret)
    case 'public-key':
      return createPublicKey(config.key.pem)
    case 'jwks':
      // jose caches the key set and refetches it when a token names an unknown
      // `kid` (key rotation), at most once per cooldown period
      // (JWT_JWKS_COOLDOWN_MS); a token naming an unknown `kid` within it is
      // refused without a fetch.
      return createRemoteJWKSet(new URL(config.key.url), {
        timeoutDuration: jwks.timeoutMs ?? 5000,
        cooldownDuration: jwks.cooldownMs ?? config.key.cooldownMs,
      })
  }
}

