// buildApp wires the service and returns the Fastify instance; it never listens
// (server.ts does). Tests build the app with real Redis and a real auth upstream.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import cookie from '@fastify/cookie'
import cors from '@fastify/cors'
import proxyAddr from '@fastify/proxy-addr'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { createAuthenticator } from './auth/authenticate.js'
import type { JwksTiming } from './auth/jwt.js'
import type { CacheLookup } from './auth/principal.js'
import type { Broker, LiveSink } from './broker/broker.js'
import { MemoryBroker } from './broker/memory-broker.js'
import { RedisBroker } from './broker/redis-broker.js'
import type { CommandClient } from './broker/redis-clients.js'
import type { Config, TrustProxy } from './config.js'
import { createIngest, type Ingest } from './ingest.js'
import { LogLimiter } from './log-limiter.js'
import { errors } from './errors.js'
import { loggerOptions, redactUrl } from './logger.js'
import { createMetrics, type Metrics } from './metrics.js'
import { clientRoute, loadClientScript } from './routes/client.js'
import { healthRoutes } from './routes/health.js'
import { metricsRoute } from './routes/metrics.js'
import { DEFAULT_LIMITS, makePublisher, type Publisher } from './publish/publisher.js'
import { NotifyRoute } from './routes/notify.js'
import { presenceRoute } from './routes/presence.js'
import { publishRoute } from './routes/publish.js'
import { Admission } from './sse/admission.js'
import { Hub } from './sse/hub.js'
import { Resumer } from './sse/resume.js'
import { trackUnusedConnections } from './unused-connections.js'

export interface AppDeps {
  /** A pino logger to use instead of one built from config. */
  logger?: FastifyBaseLogger
  /** Redis client for history reads and publishing; default: one made from the Redis settings. Closed with the app. */
  commandClient?: CommandClient
  /** Clock, epoch milliseconds. */
  now?: () => number
  /** Tests: JWKS fetch timeout, and a refetch cooldown instead of JWT_JWKS_COOLDOWN_MS (jwt mode with JWT_JWKS_URL). */
  jwks?: JwksTiming
  /** Told of every auth cache lookup (upstream and introspection modes), besides the metrics. */
  onCacheLookup?: (result: CacheLookup) => void
}

/** What the app exposes to the server entry and to tests. */
export interface Notifier {
  hub: Hub
  ingest: Ingest
  broker: Broker
  resumer: Resumer
  /** The in-process publisher: the same validation and storage as POST /publish. */
  publisher: Publisher
  metrics: Metrics
}

declare module 'fastify' {
  interface FastifyInstance {
    notifier: Notifier
  }
}

export async function buildApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<FastifyInstance> {
  // GET /notify is served in front of Fastify's router (routes/notify.ts); the
  // route exists once the app is built, before the server listens.
  let notify: NotifyRoute | undefined
  const app = Fastify({
    serverFactory: (fastify, options) => {
      const server = createServer(options.http ?? {}, (req: IncomingMessage, res: ServerResponse) => {
        if (notify?.serve(req, res, fastify) !== true) fastify(req, res)
      })
      // What Fastify sets on a server it makes itself (from the options below and its defaults).
      server.keepAliveTimeout = options.keepAliveTimeout as number
      server.requestTimeout = options.requestTimeout as number
      server.setTimeout(options.connectionTimeout as number)
      return server
    },
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: loggerOptions(config.logLevel) }),
    // Bodies are never needed by these routes; keep the bound small.
    bodyLimit: 16 * 1024,
    // Streams are long-lived; idle keep-alive sockets are closed on shutdown.
    forceCloseConnections: 'idle',
    // While draining, /notify and /readyz give their own answers: a bare 503
    // would make a plain EventSource give up for good.
    return503OnClosing: false,
    // Whether X-Forwarded-For sets request.ip (what the connect rate limit counts by).
    trustProxy: trustProxy(config.trustProxy),
    // Slow or stalled clients: the whole request (headers and body) must arrive
    // in time, and an idle connection is closed. /notify lifts the idle timeout
    // as it starts (auth has its own); a GET's request is complete with its headers.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.requestTimeoutMs,
    // Node enforces requestTimeout by a sweep (every 30 s by default) over the
    // connections still receiving a request, not over open streams; sweep often
    // enough that the timeout means what it says.
    http: { connectionsCheckingInterval: Math.min(30_000, Math.ceil(config.requestTimeoutMs / 4)) },
  })
  const logs = new LogLimiter(app.log, 10_000, deps.now)

  const hub = new Hub({
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    retryMs: config.retryMs,
    maxBufferBytes: config.maxBufferBytes,
    now: deps.now,
  })
  const ingest = createIngest(hub, config.maxEventBytes, logs)
  const broker = createBroker(config, ingest, logs, deps, (user) => hub.countOf(user))
  const resumer = new Resumer({ hub, broker, historySize: config.history.size, logs })
  broker.on('up', () => {
    app.log.info({ broker: broker.kind, channel: config.channel }, 'broker up')
    resumer.resumeSuspended()
  })
  broker.on('down', () => app.log.warn({ broker: broker.kind }, 'broker connection lost; reconnecting'))
  // Live events may come back before the catch-up has read what was missed:
  // the streams of users whose live delivery was lost are held meanwhile...
  broker.on('lost', (users: string[] | null) => resumer.suspend(users))
  // ...and whatever was published for them meanwhile is in the history.
  broker.on('regained', (users: string[] | null) => resumer.catchUp(users))
  let published = 0
  const publisher = makePublisher(
    async (items, options) => {
      const deliveries = await broker.publish(items, options)
      published += items.length
      return deliveries
    },
    { maxEvents: config.publish?.maxEvents ?? DEFAULT_LIMITS.maxEvents, maxEventBytes: config.maxEventBytes },
  )
  const metrics = createMetrics({ hub, ingest, resumer, broker, published: () => published, authMode: config.auth.mode })
  app.decorate('notifier', { hub, ingest, broker, resumer, publisher, metrics })

  app.addHook('onReady', async () => {
    if (broker.kind === 'embedded') {
      app.log.warn('no Redis configured (REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES): embedded broker, history in memory; run a single instance only')
    }
    broker.start()
  })
  // Fastify's close() waits for open connections; end the streams first so
  // clients reconnect elsewhere, within half the shutdown budget.
  const unused = trackUnusedConnections(app.server)
  app.addHook('preClose', async () => {
    // Stop accepting before the streams are told to reconnect: a balancer's
    // connect is refused and goes to another instance at once (nginx's
    // proxy_next_upstream), where a stream opened here would only be turned
    // away with a retry hint, costing its client SSE_RETRY_MS more. Requests on
    // connections already open still get the draining answers. Fastify's own
    // server.close() later waits for the connections (and takes the
    // not-running error as success).
    app.server.close()
    await hub.closeAll(Math.floor(config.shutdownTimeoutMs / 2))
    unused.destroy()
  })
  // A request that was in flight when the drain began (a publish, a refused
  // connect waiting on the auth server) is answered with `Connection: close`:
  // kept alive, its connection would hold server.close() open until the
  // keep-alive timeout (72 s), past SHUTDOWN_TIMEOUT_MS. Fastify says so itself
  // for requests that arrive while closing. A callback hook: no promise per
  // response for what is a flag check outside shutdown.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (hub.closing) reply.header('connection', 'close')
    done(null, payload)
  })
  app.addHook('onClose', async () => broker.close())

  // Fastify's default 404 logs and echoes the raw URL, which may hold a query token.
  app.setNotFoundHandler(async (request) => {
    throw errors.notFound(request.method, redactUrl(request.url))
  })
  await app.register(cookie)
  if (config.corsOrigins.length > 0) {
    // An explicit list, never '*': credentials (cookies) are allowed.
    // Retry-After is exposed so that the client helper (/client.js) can honour it.
    await app.register(cors, {
      origin: [...config.corsOrigins],
      credentials: true,
      methods: ['GET'],
      exposedHeaders: ['Retry-After'],
    })
  }
  await app.register(healthRoutes, { broker, closing: () => hub.closing })
  const script = loadClientScript()
  if (script === undefined) app.log.warn('dist/client/notify-client.js not found (run npm run build): /client.js answers 404')
  else await app.register(clientRoute, { script })
  await app.register(metricsRoute, { registry: metrics.registry, token: config.metricsToken })
  const auth = createAuthenticator(config, logs, {
    ...deps,
    onCacheLookup: (result) => {
      metrics.cacheLookup(result)
      deps.onCacheLookup?.(result)
    },
  })
  app.addHook('onClose', () => auth.close())
  const notifyRoute = new NotifyRoute({
    authenticate: auth.authenticate,
    hub,
    resumer,
    admission: new Admission(config.limits, hub),
    limits: config.limits,
    metrics,
    corsOrigins: config.corsOrigins,
    clientIp: clientIp(config.trustProxy),
    log: app.log,
  })
  await app.register(notifyRoute.plugin)
  notify = notifyRoute
  if (config.publish !== undefined) {
    await app.register(publishRoute, { token: config.publish.token, maxBytes: config.publish.maxBytes, publisher })
    const { token, presenceMaxUsers: maxUsers, maxBytes } = config.publish
    await app.register(presenceRoute, { token, maxUsers, maxBytes, broker })
  }
  return app
}

// Fastify reads a hop count as "trust the n nearest proxies"; its types only
// know the function form of that.
function trustProxy(value: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  return typeof value === 'number' ? (_address, hop) => hop < value : value
}

/** The client's address as Fastify's request.ip gives it, for the requests served in front of its router. */
function clientIp(value: TrustProxy): (req: IncomingMessage) => string {
  const trust = trustProxy(value)
  if (trust === false) return (req) => req.socket.remoteAddress ?? ''
  const trusted = trust === true ? () => true : typeof trust === 'function' ? trust : proxyAddr.compile(trust)
  return (req) => proxyAddr(req, trusted)
}

function createBroker(config: Readonly<Config>, sink: LiveSink, logs: LogLimiter, deps: AppDeps, streamsOf: (user: string) => number): Broker {
  const history = { historySize: config.history.size, historyTtlS: config.history.ttlS, idempotencyTtlS: config.history.idempotencyTtlS }
  if (config.redis === undefined) {
    return new MemoryBroker({ ...history, historyMaxBytes: config.history.maxBytes, sink, streamsOf, now: deps.now })
  }
  return new RedisBroker({ ...history, config: config.redis, channel: config.channel, logs, sink, commandClient: deps.commandClient })
}
