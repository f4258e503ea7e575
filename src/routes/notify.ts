// GET /notify: check the limits, authenticate, then hand the response to the
// hub as an event stream. Refusals are cheapest first: the per-IP rate (before
// anything else), the instance's total, the credentials, the user's own count.
//
// Served in front of Fastify's router (app.ts, serverFactory): a connect that
// becomes a stream never builds Fastify's request, reply, child logger and
// hook chain, which an open stream kept: an idle stream holds about 1.2 KiB
// less this way (BENCHMARKS.md, "Beside Nchan"). A refusal is handed on to
// Fastify with its error already decided, so that every error is answered by
// the one error handler, with the CORS headers, `Connection: close` while
// draining, and logs of any other route. The Fastify route also serves the
// requests that reach it directly (app.inject()).
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parse as parseQuery } from 'node:querystring'
import { fastifyCookie } from '@fastify/cookie'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { levels } from 'pino'
import type { Authenticate, Credentials } from '../auth/authenticate.js'
import type { Principal } from '../auth/principal.js'
import { errors, isClientError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { type Format, negotiate } from '../sse/accept.js'
import type { Admission } from '../sse/admission.js'
import { ConnectRate } from '../sse/connect-rate.js'
import type { Hub } from '../sse/hub.js'
import type { Resumer } from '../sse/resume.js'
import type { Headers } from '../sse/stream.js'

export interface NotifyDeps {
  authenticate: Authenticate
  hub: Hub
  resumer: Resumer
  admission: Admission
  limits: { maxConnections: number; maxConnectionsPerUser: number; connectRatePerMin: number }
  metrics: Pick<Metrics, 'opened' | 'authDone'>
  /** CORS_ORIGINS: the pages that may read a stream, with credentials; empty: no CORS headers. */
  corsOrigins: readonly string[]
  /** The client's address as TRUST_PROXY says: what the connect rate counts by. */
  clientIp: (req: IncomingMessage) => string
  /** Where the streams served in front of the router log their request. */
  log: FastifyBaseLogger
}

/** How a connect is answered, once its checks are done. */
interface Answer {
  /** The headers a stream's head carries besides its own (CORS, Vary); called once, right before it is written. */
  head(): Headers
  /** Answers with a catalog error (or, for a bug, a 500). */
  refuse(err: unknown): void
}

/** Most client IPs the connect rate limiter remembers; the least recently seen go first. */
const RATE_LIMIT_IPS = 20_000
/** pino's info level; `silent` and custom levels above it are not in levels.values. */
const INFO = levels.values.info ?? 30
const NO_QUERY: Readonly<Record<string, unknown>> = Object.freeze({})

/** True for GET /notify, with or without a query string: the requests served here. */
export function isNotify(req: IncomingMessage): boolean {
  const url = req.url ?? ''
  return req.method === 'GET' && url.startsWith('/notify') && (url.length === 7 || url.charCodeAt(7) === 63 /* ? */)
}

function queryOf(url: string | undefined): Record<string, unknown> {
  const at = url?.indexOf('?') ?? -1
  return at < 0 ? NO_QUERY : parseQuery((url as string).slice(at + 1))
}

/**
 * Where the client stands. The header is what EventSource sends when it
 * reconnects; the query parameter is for a fresh page that stored the last id.
 * The header wins: it is newer than anything the page was loaded with.
 */
function lastEventId(header: string | string[] | undefined, query: Record<string, unknown>): string | undefined {
  if (typeof header === 'string' && header !== '') return header
  const param = query.lastEventId
  if (param === undefined || param === '') return undefined
  // A repeated parameter arrives as an array: malformed, hence a resync.
  return typeof param === 'string' ? param : ''
}

/** Adds Accept to a Vary a plugin may have set (CORS: Origin). */
function varyAccept(vary: unknown): string {
  return typeof vary === 'string' && vary !== '' ? `${vary}, Accept` : 'Accept'
}

export class NotifyRoute {
  readonly #rate: ConnectRate | undefined
  /** Refusals decided in front of the router, for the Fastify route to answer. */
  readonly #refused = new WeakMap<IncomingMessage, unknown>()
  #requests = 0

  constructor(private readonly deps: NotifyDeps) {
    const perMinute = deps.limits.connectRatePerMin
    // In memory, per instance; 0 turns it off.
    if (perMinute > 0) this.#rate = new ConnectRate(perMinute, 60_000, RATE_LIMIT_IPS)
  }

  /**
   * Serves GET /notify in front of Fastify's router; returns false for every
   * other request, which is Fastify's. `fastify` is Fastify's request handler,
   * given a refusal to answer.
   */
  serve(req: IncomingMessage, res: ServerResponse, fastify: (req: IncomingMessage, res: ServerResponse) => void): boolean {
    if (!isNotify(req)) return false
    const refuse = (err: unknown): void => {
      this.#refused.set(req, err)
      fastify(req, res)
    }
    this.#connect(req, res, { head: () => this.#head(req), refuse }).catch(refuse)
    return true
  }

  /** The Fastify route: answers the refusals handed on by serve(), and serves app.inject(). */
  readonly plugin = async (app: FastifyInstance): Promise<void> => {
    // No HEAD twin: a HEAD request must not open a stream.
    app.get('/notify', { exposeHeadRoute: false }, async (request, reply) => {
      // The answer depends on Accept (SSE or NDJSON), refusals included.
      reply.header('vary', varyAccept(reply.getHeader('vary')))
      if (this.#refused.has(request.raw)) throw this.#refused.get(request.raw)
      await this.#connect(request.raw, reply.raw, {
        head: () => {
          reply.hijack()
          return reply.getHeaders() as Headers
        },
        // Answered as JSON by Fastify's error handler.
        refuse: (err) => {
          throw err
        },
      })
      return reply
    })
  }

  async #connect(req: IncomingMessage, res: ServerResponse, answer: Answer): Promise<void> {
    const { hub, admission, limits, metrics } = this.deps
    const waitMs = this.#rate?.hit(this.deps.clientIp(req)) ?? 0
    if (waitMs > 0) {
      metrics.opened('limited')
      answer.refuse(errors.rateLimited(Math.ceil(waitMs / 1000)))
      return
    }
    // Refused first, as it costs nothing.
    const format = negotiate(req.headers.accept)
    if (format === undefined) {
      answer.refuse(errors.notAcceptable())
      return
    }
    if (hub.closing) {
      // Draining: no need to check credentials to say "come back later".
      metrics.opened('draining')
      hub.turnAway(res, answer.head(), format)
      return
    }
    // The idle timeout of non-streaming requests must not cut a slow auth
    // call, which has its own (AUTH_UPSTREAM_TIMEOUT_MS); a stream has none.
    // (app.inject()'s stand-in socket has no timeout to lift.)
    if (typeof req.socket.setTimeout === 'function') req.socket.setTimeout(0)
    if (!admission.enter()) {
      metrics.opened('limited')
      answer.refuse(errors.tooManyConnections(limits.maxConnections))
      return
    }
    const query = queryOf(req.url)
    let principal: Principal
    try {
      principal = await this.#authenticate(req, query)
    } catch (err) {
      admission.leave()
      answer.refuse(err)
      return
    }
    // From here to hub.open, one synchronous run: the counts cannot change in between.
    admission.leave()
    if (admission.userFull(principal.userId)) {
      metrics.opened('limited')
      answer.refuse(errors.tooManyUserStreams(limits.maxConnectionsPerUser))
      return
    }
    // The client may have gone while we were checking its token.
    if (res.destroyed || res.socket === null || res.socket.destroyed) {
      res.destroy()
      return
    }
    this.#open(req, res, principal, format, answer.head(), query)
  }

  #open(req: IncomingMessage, res: ServerResponse, principal: Principal, format: Format, head: Headers, query: Record<string, unknown>): void {
    const stream = this.deps.hub.open(res, principal.userId, head, principal.expiresAt, format)
    if (stream === undefined) {
      this.deps.metrics.opened('draining')
      return
    }
    this.deps.metrics.opened('ok')
    this.deps.log.debug({ userId: principal.userId, format }, 'stream opened')
    this.deps.resumer.join(stream, lastEventId(req.headers['last-event-id'], query))
  }

  async #authenticate(req: IncomingMessage, query: Record<string, unknown>): Promise<Principal> {
    const { metrics } = this.deps
    const { authorization, cookie } = req.headers
    // The cookie is read only without an Authorization header (extract.ts).
    const credentials: Credentials = {
      headers: { authorization },
      cookies: authorization === undefined && cookie !== undefined ? fastifyCookie.parse(cookie) : undefined,
      query,
    }
    const started = performance.now()
    try {
      const principal = await this.deps.authenticate(credentials)
      metrics.authDone('ok', (performance.now() - started) / 1000)
      return principal
    } catch (err) {
      const unauthorized = isClientError(err) && err.statusCode === 401
      metrics.authDone(unauthorized ? 'unauthorized' : 'unavailable', (performance.now() - started) / 1000)
      metrics.opened(unauthorized ? 'unauthorized' : 'auth_unavailable')
      throw err
    }
  }

  /** A stream's CORS and Vary headers, as @fastify/cors and the route set them on Fastify's answers; and its log line. */
  #head(req: IncomingMessage): Headers {
    const { log, corsOrigins } = this.deps
    // Fastify logs every request it serves this way; so do the streams it never
    // sees. Only when info is on: the client address costs a getpeername() call
    // (about 30 µs, a twentieth of a connect, in a burst).
    if ((levels.values[log.level] ?? Infinity) <= INFO) {
      const request = { method: req.method, url: req.url, host: req.headers.host, ip: this.deps.clientIp(req), socket: req.socket }
      log.info({ reqId: `notify-${++this.#requests}`, req: request }, 'incoming request')
    }
    if (corsOrigins.length === 0) return { vary: 'Accept' }
    const origin = req.headers.origin
    return {
      vary: 'Origin, Accept',
      ...(origin !== undefined && corsOrigins.includes(origin) && { 'access-control-allow-origin': origin }),
      'access-control-allow-credentials': 'true',
      'access-control-expose-headers': 'Retry-After',
    }
  }
}
