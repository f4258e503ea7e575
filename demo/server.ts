// `npm run demo`: the real service (embedded broker, jwt mode) plus a few
// demo-only routes that play the part of "your app": a sign-in without a
// password that sets the token cookies, a refresh endpoint, and a send form
// that publishes server-side. None of this exists in the production server
// (src/server.ts); it lives here only.
//
//   GET /                 the demo page (demo/index.html, demo.css, demo.js)
//   POST /demo/session    { user } -> access_token (short-lived JWT) + demo_refresh cookies
//   GET /demo/session     { user } from the refresh cookie, or 401
//   POST /demo/refresh    a new access_token from the refresh cookie, or 401
//   DELETE /demo/session  clears both cookies
//   POST /demo/send       { to, type, text } -> published to `to`, from the signed-in user
//   POST /demo/job        starts a pretend job for the signed-in user: its progress
//                         (0..100 %) is published with a collapse key, so it takes one
//                         history entry and a reloaded page shows the latest; a
//                         job.finished notification ends it
import { randomBytes } from 'node:crypto'
import { readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import createError from '@fastify/error'
import type { CookieSerializeOptions } from '@fastify/cookie'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { jwtVerify, SignJWT } from 'jose'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'

export interface DemoOptions {
  /** Default: env PORT, else 8080; 0 picks a free port. */
  port?: number
  /** Default: env HOST, else 127.0.0.1. */
  host?: string
  /** Lifetime of the access token in seconds. Default 120: short, so the refresh path shows. */
  tokenTtlS?: number
  /** pino level. Default: env LOG_LEVEL, else info. */
  logLevel?: string
  /** Awaited before each progress step of a demo job. Default: a 400 ms timer (a 4 s job). */
  jobPace?: () => Promise<void>
}

export interface Demo {
  app: FastifyInstance
  /** http://<host>:<port>/ : the page. */
  url: string
  close(): Promise<void>
}

const DEMO_TYPES = ['comment.liked', 'order.shipped', 'job.finished'] as const
/** A demo job's steps, in percent. */
const JOB_STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
const JOB_STEP_MS = 400
const USER = { type: 'string', minLength: 1, maxLength: 32, pattern: '^[A-Za-z0-9_.-]+$' } as const
const REFRESH_TTL_S = 12 * 60 * 60
const ISSUER = 'notify-demo'
const AUDIENCE = 'notify-demo'
const REFRESH_AUDIENCE = 'notify-demo-refresh'
const REFRESH_COOKIE = 'demo_refresh'

const NotSignedIn = createError('DEMO_NOT_SIGNED_IN', 'Not signed in', 401, TypeError, false)

/** A random secret of 43 base64url characters (256 bits), new at every start. */
const randomSecret = (): string => randomBytes(32).toString('base64url')

export async function startDemo(opts: DemoOptions = {}): Promise<Demo> {
  const tokenTtlS = opts.tokenTtlS ?? 120
  // Signs the access tokens; the service verifies them with it (JWT_SECRET).
  const accessSecret = randomSecret()
  // Signs the refresh tokens. The service never learns it, so a refresh token
  // sent to /notify fails the signature check (401), whatever its claims say;
  // its audience is not JWT_AUDIENCE either. Conversely /demo/refresh only
  // takes tokens signed with this key and typed demo-refresh.
  const refreshKey = new TextEncoder().encode(randomSecret())
  const accessKey = new TextEncoder().encode(accessSecret)

  const config = loadConfig({
    AUTH_MODE: 'jwt',
    JWT_SECRET: accessSecret,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    // Loopback unless asked: anyone who can reach the demo can sign in as anyone.
    HOST: opts.host ?? (process.env.HOST || '127.0.0.1'),
    PORT: String(opts.port ?? (process.env.PORT || 8080)),
    LOG_LEVEL: opts.logLevel ?? (process.env.LOG_LEVEL || 'info'),
    // Closing the demo should not wait long for browsers to let go.
    SHUTDOWN_TIMEOUT_MS: '4000',
    // No REDIS_URL: the embedded broker. No PUBLISH_TOKEN: /demo/send publishes in-process.
  })
  const app = await buildApp(config)
  app.decorateRequest('demoUser', undefined)

  const dir = fileURLToPath(new URL('.', import.meta.url))
  const statics: [string, string, string][] = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/demo.css', 'demo.css', 'text/css; charset=utf-8'],
    ['/demo.js', 'demo.js', 'text/javascript; charset=utf-8'],
  ]
  for (const [path, file, type] of statics) {
    const body = readFileSync(dir + file)
    app.get(path, async (_request, reply) =>
      reply
        .header('content-type', type)
        .header('cache-control', 'no-cache')
        // Event data is rendered with textContent; the policy is a second fence.
        .header('content-security-policy', "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        .header('x-content-type-options', 'nosniff')
        .send(body),
    )
  }

  // HttpOnly: the page's JavaScript never sees a token. SameSite=Strict: no
  // other site can make the browser send them (the demo's POSTs are CSRF-safe).
  // No Secure flag: the demo runs on plain http://localhost; in production the
  // cookies must be Secure.
  const cookie = (maxAge: number): CookieSerializeOptions => ({ httpOnly: true, sameSite: 'strict', path: '/', maxAge })

  const setAccessCookie = async (reply: FastifyReply, user: string): Promise<void> => {
    const now = Math.floor(Date.now() / 1000)
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + tokenTtlS)
      .sign(accessKey)
    reply.setCookie('access_token', token, cookie(tokenTtlS))
  }

  /** The signed-in user, from the refresh cookie; throws 401 when there is none or it is bad. */
  const sessionUser = async (request: FastifyRequest): Promise<string> => {
    const token = request.cookies[REFRESH_COOKIE]
    if (token === undefined || token === '') throw new NotSignedIn()
    try {
      const { payload } = await jwtVerify(token, refreshKey, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: REFRESH_AUDIENCE,
        requiredClaims: ['sub', 'exp'],
      })
      if (payload.typ !== 'demo-refresh' || typeof payload.sub !== 'string') throw new Error('not a refresh token')
      return payload.sub
    } catch {
      throw new NotSignedIn()
    }
  }

  app.post<{ Body: { user: string } }>(
    '/demo/session',
    { schema: { body: { type: 'object', required: ['user'], additionalProperties: false, properties: { user: USER } } } },
    async (request, reply) => {
      const { user } = request.body
      const refresh = await new SignJWT({ typ: 'demo-refresh' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(user)
        .setIssuer(ISSUER)
        .setAudience(REFRESH_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(`${REFRESH_TTL_S}s`)
        .sign(refreshKey)
      reply.setCookie(REFRESH_COOKIE, refresh, cookie(REFRESH_TTL_S))
      await setAccessCookie(reply, user)
      return { user }
    },
  )

  app.get('/demo/session', async (request) => ({ user: await sessionUser(request) }))

  app.post('/demo/refresh', async (request, reply) => {
    const user = await sessionUser(request)
    await setAccessCookie(reply, user)
    return { user }
  })

  app.delete('/demo/session', async (_request, reply) => {
    reply.clearCookie('access_token', cookie(0)).clearCookie(REFRESH_COOKIE, cookie(0))
    return reply.code(204).send()
  })

  app.post<{ Body: { to: string; type: (typeof DEMO_TYPES)[number]; text: string } }>(
    '/demo/send',
    {
      schema: {
        body: {
          type: 'object',
          required: ['to', 'type', 'text'],
          additionalProperties: false,
          properties: {
            to: USER,
            type: { type: 'string', enum: DEMO_TYPES },
            text: { type: 'string', minLength: 1, maxLength: 280 },
          },
        },
      },
      // The sender is checked before the body is parsed and validated.
      onRequest: async (request) => {
        request.demoUser = await sessionUser(request)
      },
    },
    async (request, reply) => {
      const { to, type, text } = request.body
      const [published] = await app.notifier.publisher.publish({
        recipient_id: to,
        type,
        from: request.demoUser,
        text,
        sent_at: new Date().toISOString(),
      })
      return reply.code(202).send({ id: published?.id ?? null })
    },
  )

  // A job runs on after its request; it stops when the demo closes.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  const jobPace = opts.jobPace ?? (() => new Promise<void>((resolve) => setTimeout(resolve, JOB_STEP_MS).unref()))
  let jobs = 0
  const runJob = async (user: string, job: string): Promise<void> => {
    const started = Date.now()
    for (const percent of JOB_STEPS) {
      await jobPace()
      if (closing) return
      // One history entry per job whatever the number of steps: each step
      // replaces the previous one (collapse_key), and a page that comes back
      // gets the latest step only.
      await app.notifier.publisher.publish({ recipient_id: user, type: 'job.progress', collapse_key: `job:${job}`, job, percent })
    }
    await app.notifier.publisher.publish({
      recipient_id: user,
      type: 'job.finished',
      from: 'demo job',
      text: `Job ${job} finished in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      sent_at: new Date().toISOString(),
    })
  }

  app.post('/demo/job', async (request, reply) => {
    const user = await sessionUser(request)
    const job = `${Date.now().toString(36)}-${++jobs}`
    runJob(user, job).catch((err: Error) => request.log.warn({ err: { message: err.message }, job }, 'demo job stopped'))
    return reply.code(202).send({ job })
  })

  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    await app.close()
    throw err
  }
  const { port } = app.server.address() as { port: number }
  const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host
  return {
    app,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    close: () => app.close(),
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** /demo/send: the signed-in sender. */
    demoUser?: string
  }
}

/** True when this file is the process's entry (tsx demo/server.ts), not imported. */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href
  } catch {
    return false
  }
}

// Run directly: start, print where to go, stop on Ctrl-C.
if (isMain()) {
  let demo: Demo
  try {
    demo = await startDemo()
  } catch (err) {
    // A bad PORT, HOST or LOG_LEVEL, or the port is taken (EADDRINUSE).
    const hint = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? '; pick another port: PORT=8081 npm run demo' : ''
    process.stderr.write(`demo: ${(err as Error).message}${hint}\n`)
    process.exit(1)
  }
  process.stdout.write(
    `\nnotify-sse demo: open ${demo.url}\n` +
      'Sign in as any name (e.g. alice); open a second browser profile or a private window as another user (bob) and send each other notifications.\n\n',
  )
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(1), 6000).unref()
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
