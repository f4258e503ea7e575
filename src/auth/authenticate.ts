// The one entry point the /notify route calls: find the token, check it.
import type { FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import type { LogLimiter } from '../log-limiter.js'
import { extractToken } from './extract.js'
import { createJwtVerifier, type JwksTiming } from './jwt.js'
import type { Principal, Verifier } from './principal.js'
import { createUpstreamVerifier } from './upstream.js'

export interface AuthDeps {
  fetch?: typeof fetch
  now?: () => number
  jwks?: JwksTiming
}

export type Authenticate = (request: FastifyRequest) => Promise<Principal>

export function createAuthenticator(config: Readonly<Config>, logs: LogLimiter, deps: AuthDeps = {}): Authenticate {
  const auth = config.auth
  const verify: Verifier =
    auth.mode === 'upstream'
      ? createUpstreamVerifier({ ...auth, logs, fetch: deps.fetch, now: deps.now })
      : createJwtVerifier(auth, { logs, jwks: deps.jwks })
  const extractOptions = { cookieName: config.cookieName, allowQueryToken: config.allowQueryToken }

  return async function authenticate(request: FastifyRequest): Promise<Principal> {
    const { token } = extractToken(
      { authorization: request.headers.authorization, cookies: request.cookies, query: request.query },
      extractOptions,
    )
    return verify(token)
  }
}
