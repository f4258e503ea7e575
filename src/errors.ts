// Every error a client can see: code, HTTP status and message, in one place.
// Fastify's error handler turns these into a JSON body
// `{ statusCode, code, error, message }` and sets `headers` when present.
import createError, { type FastifyError } from '@fastify/error'

// Stack traces are not captured: these are expected outcomes on a hot path, not bugs.
const TokenMissing = createError('NOTIFY_TOKEN_MISSING', 'Missing bearer token', 401, TypeError, false)
const TokenMalformed = createError('NOTIFY_TOKEN_MALFORMED', 'Malformed credentials: %s', 401, TypeError, false)
const TokenRejected = createError('NOTIFY_TOKEN_REJECTED', 'Invalid or expired token', 401, TypeError, false)
const NotFound = createError('NOTIFY_NOT_FOUND', 'Route %s:%s not found', 404, Error, false)
const AuthUnavailable = createError('NOTIFY_AUTH_UNAVAILABLE', 'Authentication service unavailable, retry later', 503, Error, false)

export type ClientError = FastifyError & { statusCode: number; headers?: Record<string, string> }

/** Seconds a client is told to wait when authentication is unavailable. */
export const AUTH_RETRY_AFTER_S = 5

// RFC 6750 section 3: a 401 names the scheme and, when a token was sent, why it failed.
const REALM = 'Bearer realm="notify"'

function withHeaders(err: FastifyError, headers: Record<string, string>): ClientError {
  return Object.assign(err, { headers }) as ClientError
}

export const errors = {
  tokenMissing: (): ClientError => withHeaders(new TokenMissing(), { 'www-authenticate': REALM }),
  tokenMalformed: (why: string): ClientError =>
    withHeaders(new TokenMalformed(why), { 'www-authenticate': `${REALM}, error="invalid_request"` }),
  tokenRejected: (): ClientError =>
    withHeaders(new TokenRejected(), { 'www-authenticate': `${REALM}, error="invalid_token"` }),
  // Never 401 when the auth server is down: the client's token may be fine.
  authUnavailable: (): ClientError => withHeaders(new AuthUnavailable(), { 'retry-after': String(AUTH_RETRY_AFTER_S) }),
  /** `url` must already be redacted: it is echoed to the client and logged. */
  notFound: (method: string, url: string): ClientError => new NotFound(method, url) as ClientError,
}

export function isClientError(err: unknown): err is ClientError {
  return err instanceof Error && typeof (err as ClientError).statusCode === 'number' && typeof (err as ClientError).code === 'string'
}
