// The one entry point the /notify route calls: find the token, check it.
import type { FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import type { LogLimiter } from '../log-limiter.js'
import { extractToken } from './extract.js'
import { createIntrospectionVerifier } from './introspection.js'
import { createJwtVerifier, type JwksTiming } from './jwt.js'
import type { CacheLookup, Principal, Verifier } from './principal.js'
import { createUpstreamVerifier } from './upstream.js'

export interface AuthDeps {
  fetch?: typeof fetch
  now?: () => number
  jwks?: JwksTiming
  /** Told how each upstream or introspection check was answered; jwt mode has no cache. */
  onCacheLookup?: (result: CacheLookup) => void
}

export type Authenticate = (request: FastifyRequest) => Promise<Principal>

export function createAuthenticator(config: Readonly<Config>, logs: LogLimiter, deps: AuthDeps = {}): Authenticate {
  const verify = createVerifier(config, logs, deps)
  const extractOptions = { cookieName: config.cookieName, allowQueryToken: config.allowQueryToken }

  return async function authenticate(request: FastifyRequest): Promise<Principal> {
    const { token } = extractToken(
      { authorization: request.headers.authorization, cookies: request.cookies, query: request.query },
      extractOptions,
    )
    return verify(token)
  }
}

function createVerifier(config: Readonly<Config>, logs: LogLimiter, deps: AuthDeps): Verifier {
  const auth = config.auth
  const remote = { logs, fetch: deps.fetch, now: deps.now, onCacheLookup: deps.onCacheLookup }
  switch (auth.mode) {
    case 'upstream':
      return createUpstreamVerifier({ ...auth, ...remote })
    case 'introspection':
      return createIntrospectionVerifier({ ...auth, ...remote })
    case 'jwt':
      return createJwtVerifier(auth, { logs, jwks: deps.jwks })
  }
}
