// The one entry point the /notify route calls: find the token, check it. Owns
// the connection pool to a remote auth server, and closes it.
import type { Config } from '../config.js'
import type { LogLimiter } from '../log-limiter.js'
import { extractToken } from './extract.js'
import { createAuthHttp } from './http-client.js'
import { createIntrospectionVerifier } from './introspection.js'
import { createJwtVerifier, type JwksTiming } from './jwt.js'
import type { CacheLookup, Principal, Verifier } from './principal.js'
import { AUTH_IN_FLIGHT } from './slots.js'
import { createUpstreamVerifier } from './upstream.js'

export interface AuthDeps {
  now?: () => number
  jwks?: JwksTiming
  /** Told how each upstream or introspection check was answered; jwt mode has no cache. */
  onCacheLookup?: (result: CacheLookup) => void
}

/** What a request carries that may hold credentials (a Fastify request is one). */
export interface Credentials {
  headers: { authorization?: string }
  /** Parsed Cookie header; only read when there is no Authorization header. */
  cookies?: Record<string, string | undefined>
  /** Parsed query string; only read when query tokens are allowed. */
  query?: unknown
}

export type Authenticate = (request: Credentials) => Promise<Principal>

export interface Authenticator {
  authenticate: Authenticate
  /** Closes the connections to the auth server (remote modes); checks in flight fail. */
  close(): Promise<void>
}

export function createAuthenticator(config: Readonly<Config>, logs: LogLimiter, deps: AuthDeps = {}): Authenticator {
  const { verify, close } = createVerifier(config, logs, deps)
  const extractOptions = { cookieName: config.cookieName, allowQueryToken: config.allowQueryToken }

  return {
    async authenticate(request: Credentials): Promise<Principal> {
      const { token } = extractToken(
        { authorization: request.headers.authorization, cookies: request.cookies, query: request.query },
        extractOptions,
      )
      return verify(token)
    },
    close,
  }
}

function createVerifier(config: Readonly<Config>, logs: LogLimiter, deps: AuthDeps): { verify: Verifier; close: () => Promise<void> } {
  const auth = config.auth
  if (auth.mode === 'jwt') return { verify: createJwtVerifier(auth, { logs, jwks: deps.jwks }), close: async () => {} }
  // As many pooled connections as checks may be in flight at once (slots.ts).
  const http = createAuthHttp(auth.url, AUTH_IN_FLIGHT)
  const remote = { logs, http, now: deps.now, onCacheLookup: deps.onCacheLookup }
  const verify = auth.mode === 'upstream'
    ? createUpstreamVerifier({ ...auth, ...remote })
    : createIntrospectionVerifier({ ...auth, ...remote })
  return { verify, close: () => http.close() }
}
