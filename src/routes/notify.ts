// GET /notify: check the limits, authenticate, then hand the response to the hub
// as an event stream. Refusals are cheapest first: the per-IP rate (before
// anything else), the instance's total, the credentials, the user's own count.
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { Authenticate } from '../auth/authenticate.js'
import type { Principal } from '../auth/principal.js'
import { errors, isClientError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { negotiate } from '../sse/accept.js'
import type { Admission } from '../sse/admission.js'
import type { Hub } from '../sse/hub.js'
import type { Resumer } from '../sse/resume.js'

export interface NotifyDeps {
  authenticate: Authenticate
  hub: Hub
  resumer: Resumer
  admission: Admission
  limits: { maxConnections: number; maxConnectionsPerUser: number; connectRatePerMin: number }
  metrics: Pick<Metrics, 'opened' | 'authDone'>
}

/** Most client IPs the connect rate limiter remembers; the least recently seen go first. */
const RATE_LIMIT_IPS = 20_000

/**
 * Where the client stands. The header is what EventSource sends when it
 * reconnects; the query parameter is for a fresh page that stored the last id.
 * The header wins: it is newer than anything the page was loaded with.
 */
function lastEventId(headers: Record<string, unknown>, query: unknown): string | undefined {
  const header = headers['last-event-id']
  if (typeof header === 'string' && header !== '') return header
  const param = (query as Record<string, unknown> | undefined)?.lastEventId
  if (param === undefined || param === '') return undefined
  // A repeated parameter arrives as an array: malformed, hence a resync.
  return typeof param === 'string' ? param : ''
}

/** Adds Accept to a Vary a plugin may have set (CORS: Origin). */
function varyAccept(vary: unknown): string {
  return typeof vary === 'string' && vary !== '' ? `${vary}, Accept` : 'Accept'
}

export async function notifyRoute(app: FastifyInstance, deps: NotifyDeps): Promise<void> {
  const { hub, resumer, admission, limits, metrics } = deps
  const perMinute = limits.connectRatePerMin
  if (perMinute > 0) {
    // Keyed by request.ip, which honours TRUST_PROXY. In memory, per instance.
    await app.register(rateLimit, {
      global: false,
      cache: RATE_LIMIT_IPS,
      // A stream's head carries no rate headers; a refusal carries them all.
      addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
      errorResponseBuilder: (_request, context) => {
        metrics.opened('limited')
        return errors.rateLimited(Math.ceil(context.ttl / 1000))
      },
    })
  }

  const authenticate = async (request: Parameters<Authenticate>[0]): Promise<Principal> => {
    const started = performance.now()
    try {
      const principal = await deps.authenticate(request)
      metrics.authDone('ok', (performance.now() - started) / 1000)
      return principal
    } catch (err) {
      const unauthorized = isClientError(err) && err.statusCode === 401
      metrics.authDone(unauthorized ? 'unauthorized' : 'unavailable', (performance.now() - started) / 1000)
      metrics.opened(unauthorized ? 'unauthorized' : 'auth_unavailable')
      throw err
    }
  }

  app.get(
    '/notify',
    {
      // No HEAD twin: a HEAD request must not open a stream.
      exposeHeadRoute: false,
      ...(perMinute > 0 && { config: { rateLimit: { max: perMinute, timeWindow: 60_000 } } }),
    },
    async (request, reply) => {
      // The answer depends on Accept (SSE or NDJSON); refused first, as it costs nothing.
      reply.header('vary', varyAccept(reply.getHeader('vary')))
      const format = negotiate(request.headers.accept)
      if (format === undefined) throw errors.notAcceptable()
      if (hub.closing) {
        // Draining: no need to check credentials to say "come back later".
        metrics.opened('draining')
        reply.hijack()
        hub.turnAway(reply.raw, reply.getHeaders() as Record<string, string>, format)
        return reply
      }
      // The idle timeout of non-streaming requests must not cut a slow auth
      // call, which has its own (AUTH_UPSTREAM_TIMEOUT_MS); a stream has none.
      request.raw.socket.setTimeout(0)
      if (!admission.enter()) {
        metrics.opened('limited')
        throw errors.tooManyConnections(limits.maxConnections)
      }
      let principal: Principal
      try {
        // Throws 401 or 503 catalog errors, answered as JSON by Fastify.
        principal = await authenticate(request)
      } finally {
        admission.leave()
      }
      if (admission.userFull(principal.userId)) {
        metrics.opened('limited')
        throw errors.tooManyUserStreams(limits.maxConnectionsPerUser)
      }
      reply.hijack()
      const res = reply.raw
      // The client may have gone while we were checking its token.
      if (res.destroyed || res.socket === null || res.socket.destroyed) {
        res.destroy()
        return reply
      }
      const stream = hub.open(res, principal.userId, reply.getHeaders() as Record<string, string>, principal.expiresAt, format)
      if (stream === undefined) {
        metrics.opened('draining')
        return reply
      }
      metrics.opened('ok')
      request.log.debug({ userId: principal.userId, format }, 'stream opened')
      resumer.join(stream, lastEventId(request.headers, request.query))
      return reply
    },
  )
}
