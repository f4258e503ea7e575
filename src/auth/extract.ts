// Where the token comes from, in order: Authorization header, cookie, and (only
// when enabled) the `access_token` query parameter. Pure: no I/O.
import { errors } from '../errors.js'

export type TokenSource = 'header' | 'cookie' | 'query'

export interface TokenCarrier {
  authorization: string | undefined
  cookies: Record<string, string | undefined> | undefined
  query: unknown
}

export interface ExtractOptions {
  cookieName: string
  allowQueryToken: boolean
}

/** Longest token accepted; bounds what is hashed, cached and sent upstream. */
export const MAX_TOKEN_LENGTH = 8192

// RFC 6750 b64token: what a bearer token may contain.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
// The scheme is case-insensitive (RFC 7235 section 2.1); one or more spaces follow it.
const BEARER = /^Bearer +(\S*)\s*$/i

/** Returns the token and where it came from, or throws a 401 catalog error. */
export function extractToken(req: TokenCarrier, opts: ExtractOptions): { token: string; source: TokenSource } {
  if (req.authorization !== undefined) {
    // A header that is present decides: a client that sends Basic credentials
    // should hear that they are wrong, not be silently judged by a stale cookie.
    const match = BEARER.exec(req.authorization)
    if (match === null) throw errors.tokenMalformed('Authorization scheme must be Bearer')
    return { token: checked(match[1] ?? ''), source: 'header' }
  }
  const cookie = req.cookies?.[opts.cookieName]
  if (cookie !== undefined && cookie !== '') return { token: checked(cookie), source: 'cookie' }
  if (opts.allowQueryToken) {
    const q = (req.query as Record<string, unknown> | undefined)?.access_token
    if (typeof q === 'string' && q !== '') return { token: checked(q), source: 'query' }
    if (Array.isArray(q)) throw errors.tokenMalformed('access_token given more than once')
  }
  throw errors.tokenMissing()
}

function checked(token: string): string {
  if (token === '') throw errors.tokenMalformed('empty token')
  if (token.length > MAX_TOKEN_LENGTH) throw errors.tokenMalformed(`token longer than ${MAX_TOKEN_LENGTH} characters`)
  if (!B64TOKEN.test(token)) throw errors.tokenMalformed('token has characters a bearer token cannot have')
  return token
}
