// Every error a client can see: code, HTTP status and message, in one place.
// Fastify's error handler turns these into a JSON body
// `{ statusCode, code, error, message }` and sets `headers` when present.
import createError, { type FastifyError } from '@fastify/error'

// Stack traces are not captured: these are expected outcomes on a hot path, not bugs.
const TokenMissing = createError('NOTIFY_TOKEN_MISSING', 'Missing bearer token', 401, TypeError, false)
const TokenMalformed = createError('NOTIFY_TOKEN_MALFORMED', 'Malformed credentials: %s', 401, TypeError, false)
const TokenRejected = createError('NOTIFY_TOKEN_REJECTED', 'Invalid or expired token', 401, TypeError, false)
const NotFound = createError('NOTIFY_NOT_FOUND', 'Route %s:%s not found', 404, Error, false)
const NotAcceptable = createError(
  'NOTIFY_NOT_ACCEPTABLE', 'Accept names neither text/event-stream nor application/x-ndjson', 406, TypeError, false)
const AuthUnavailable = createError('NOTIFY_AUTH_UNAVAILABLE', 'Authentication service unavailable, retry later', 503, Error, false)
const PublishUnauthorized = createError('NOTIFY_PUBLISH_UNAUTHORIZED', 'Missing or wrong publish token', 401, TypeError, false)
const PublishUnavailable = createError(
  'NOTIFY_PUBLISH_UNAVAILABLE', 'History store unreachable: nothing was published, retry later', 503, Error, false)
const PublishOutcomeUnknown = createError(
  'NOTIFY_PUBLISH_OUTCOME_UNKNOWN',
  'No answer from Redis (%s): the events may or may not have been published; retry with the same Idempotency-Key',
  503, Error, false)
const PublishNotReplicated = createError(
  'NOTIFY_PUBLISH_NOT_REPLICATED',
  'Published, but %d of the %d replicas asked for confirmed it in time; retry with the same Idempotency-Key',
  503, Error, false)
const InvalidIdempotencyKey = createError(
  'NOTIFY_INVALID_IDEMPOTENCY_KEY', 'Idempotency-Key must be 1 to 128 visible ASCII characters', 400, TypeError, false)
const IdempotencyConflict = createError(
  'NOTIFY_IDEMPOTENCY_CONFLICT', 'This Idempotency-Key was used for other events; nothing was published', 422, TypeError, false)
const MetricsUnauthorized = createError('NOTIFY_METRICS_UNAUTHORIZED', 'Missing or wrong metrics token', 401, TypeError, false)
const TooManyConnections = createError(
  'NOTIFY_TOO_MANY_CONNECTIONS', 'This instance holds its maximum of %d streams, retry later', 503, Error, false)
const TooManyUserStreams = createError(
  'NOTIFY_TOO_MANY_USER_STREAMS', 'This user already holds the maximum of %d streams', 429, RangeError, false)
const RateLimited = createError('NOTIFY_RATE_LIMITED', 'Too many connection attempts, retry in %s', 429, RangeError, false)
const InvalidUser = createError('NOTIFY_INVALID_USER', '%s', 400, TypeError, false)
const TooManyUsers = createError('NOTIFY_TOO_MANY_USERS', '%d users asked, at most %d per call', 413, RangeError, false)
const PresenceUnavailable = createError(
  'NOTIFY_PRESENCE_UNAVAILABLE', 'Redis unreachable or too slow: presence unknown, retry later', 503, Error, false)
const InvalidEvent = createError('NOTIFY_INVALID_EVENT', '%s', 400, TypeError, false)
const EventTooLarge = createError('NOTIFY_EVENT_TOO_LARGE', '%s', 413, RangeError, false)

export type ClientError = FastifyError & { statusCode: number; headers?: Record<string, string> }

/** Which event of a publish batch, and which of its fields, an error is about. */
export interface EventErrorDetails {
  /** Index in the batch (0 for a single event); absent when about the batch as a whole. */
  event?: number
  field: string
}

export type EventError = ClientError & { details: EventErrorDetails }

/** Seconds a client is told to wait when authentication is unavailable. */
export const AUTH_RETRY_AFTER_S = 5
/**
 * Seconds a client is told to wait when a connection limit is reached: longer
 * than an outage's, so refused clients spread out instead of coming back together.
 */
export const LIMIT_RETRY_AFTER_S = 10

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
  publishUnauthorized: (): ClientError =>
    withHeaders(new PublishUnauthorized(), { 'www-authenticate': 'Bearer realm="publish"' }),
  // Never 202 for what could not be stored: the publisher retries instead.
  publishUnavailable: (): ClientError => withHeaders(new PublishUnavailable(), { 'retry-after': String(AUTH_RETRY_AFTER_S) }),
  /** The fate of the events is unknown: only a retry with the same Idempotency-Key is safe. */
  publishOutcomeUnknown: (why: string): ClientError => withHeaders(new PublishOutcomeUnknown(why), { 'retry-after': '1' }),
  publishNotReplicated: (got: number, wanted: number): ClientError =>
    withHeaders(new PublishNotReplicated(got, wanted), { 'retry-after': '1' }),
  invalidIdempotencyKey: (): ClientError => new InvalidIdempotencyKey() as ClientError,
  idempotencyConflict: (): ClientError => new IdempotencyConflict() as ClientError,
  metricsUnauthorized: (): ClientError =>
    withHeaders(new MetricsUnauthorized(), { 'www-authenticate': 'Bearer realm="metrics"' }),
  tooManyConnections: (max: number): ClientError =>
    withHeaders(new TooManyConnections(max), { 'retry-after': String(LIMIT_RETRY_AFTER_S) }),
  // Another tab of this user may close; Retry-After keeps a retrying client slow.
  tooManyUserStreams: (max: number): ClientError =>
    withHeaders(new TooManyUserStreams(max), { 'retry-after': String(LIMIT_RETRY_AFTER_S) }),
  /** `seconds` until the client's window resets (the rate limiter also sets Retry-After). */
  rateLimited: (seconds: number): ClientError =>
    withHeaders(new RateLimited(`${seconds} s`), { 'retry-after': String(Math.max(1, seconds)) }),
  invalidEvent: (details: EventErrorDetails, why: string): EventError =>
    Object.assign(new InvalidEvent(`${where(details)}: ${why}`), { details }) as EventError,
  eventTooLarge: (details: EventErrorDetails, why: string): EventError =>
    Object.assign(new EventTooLarge(`${where(details)}: ${why}`), { details }) as EventError,
  /** GET /presence/<user>, POST /presence: a user id breaks the recipient rules (recipient.ts). */
  invalidUser: (why: string): ClientError => new InvalidUser(why) as ClientError,
  tooManyUsers: (asked: number, max: number): ClientError => new TooManyUsers(asked, max) as ClientError,
  presenceUnavailable: (): ClientError => withHeaders(new PresenceUnavailable(), { 'retry-after': String(AUTH_RETRY_AFTER_S) }),
  /** GET /notify: the client accepts neither stream format (sse/accept.ts). */
  notAcceptable: (): ClientError => new NotAcceptable() as ClientError,
  /** `url` must already be redacted: it is echoed to the client and logged. */
  notFound: (method: string, url: string): ClientError => new NotFound(method, url) as ClientError,
}

function where({ event, field }: EventErrorDetails): string {
  return event === undefined ? field : `event ${event}, ${field}`
}

export function isEventError(err: unknown): err is EventError {
  return isClientError(err) && typeof (err as EventError).details === 'object'
}

export function isClientError(err: unknown): err is ClientError {
  return err instanceof Error && typeof (err as ClientError).statusCode === 'number' && typeof (err as ClientError).code === 'string'
}
