// Authentication against a real HTTP auth upstream: where the token comes
// from, 401 versus 503, single-flight, caching and connection reuse.
import { EventEmitter, once } from 'node:events'
import { type IncomingMessage, request, type ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { createAuthenticator } from '../src/auth/authenticate.js'
import { AUTH_IN_FLIGHT } from '../src/auth/slots.js'
import type { CacheLookup } from '../src/auth/principal.js'
import { loadConfig } from '../src/config.js'
import { LogLimiter } from '../src/log-limiter.js'
import { build, type Built } from './helpers/app.js'
import { freePort } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'
import { startUpstream } from './helpers/upstream.js'

// Tests wait on stream events; a regression that leaves one waiting is reported against that test.
// Generous: a test also starts redis-server, an upstream or a provider and builds the app,
// and tears them down: on a loaded machine (load ~20 on 2 cores) one took over 15 s.
const WAIT = { timeout: 60_000 }

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
}

interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

function jsonBody(stream: TestStream): ErrorBody {
  return JSON.parse(stream.body) as ErrorBody
}

/** Proves a stream belongs to `userId`: an event for that user arrives on it. */
async function deliversTo(s: Built, stream: TestStream, userId: string): Promise<string | undefined> {
  await s.publish({ recipient_id: userId, type: 'probe' })
  const [e] = await stream.nextEvents(1)
  return e?.event
}

t.test('a header token opens a stream with the event-stream headers and first bytes', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  t.equal(stream.status, 200)
  t.match(stream.headers, SSE_HEADERS)
  await stream.nextComments(1)
  t.match(stream.raw(), /^retry: 3000\n\n: [^\n]*\n\n/, '`retry:` first, then a comment')
  t.same(stream.retry, [3000])
  t.same(s.upstream.headers, ['Bearer user-1'], 'the upstream saw the token as a Bearer header')
  t.equal(await deliversTo(s, stream, '1'), 'probe', 'the stream belongs to the user the upstream named')
})

t.test('a cookie token opens a stream too', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { cookie: 'theme=dark; access_token=user-1' })
  t.equal(stream.status, 200)
  t.match(stream.headers, SSE_HEADERS)
  await stream.nextComments(1)
  t.match(stream.raw(), /^retry: \d+\n\n: /)
  t.same(s.upstream.headers, ['Bearer user-1'])
  t.equal(await deliversTo(s, stream, '1'), 'probe')
})

t.test('no token: 401 JSON with a Bearer challenge, upstream not asked', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`)
  t.equal(stream.status, 401)
  t.match(stream.headers['content-type'], /^application\/json/)
  t.match(stream.headers['www-authenticate'], /^Bearer/)
  t.match(jsonBody(stream), { statusCode: 401, code: 'NOTIFY_TOKEN_MISSING' })
  t.equal(s.upstream.totalCalls(), 0)
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('a malformed header: 401 invalid_request, upstream not asked', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Basic dXNlcjpwYXNz', cookie: 'access_token=user-1' })
  t.equal(stream.status, 401)
  t.match(stream.headers['www-authenticate'], /^Bearer .*error="invalid_request"/)
  t.match(jsonBody(stream), { code: 'NOTIFY_TOKEN_MALFORMED' })
  t.equal(s.upstream.totalCalls(), 0)
})

t.test('the query token is refused by default', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify?access_token=user-1`)
  t.equal(stream.status, 401)
  t.match(stream.headers['www-authenticate'], /^Bearer/)
  t.match(jsonBody(stream), { code: 'NOTIFY_TOKEN_MISSING' })
  t.equal(s.upstream.totalCalls(), 0, 'the token never reached the upstream')
})

t.test('the query token is accepted with AUTH_ALLOW_QUERY_TOKEN=true', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_ALLOW_QUERY_TOKEN: 'true' } })
  const stream = await openStream(t, `${s.base}/notify?access_token=user-1`)
  t.equal(stream.status, 200)
  t.same(s.upstream.headers, ['Bearer user-1'])
  t.equal(await deliversTo(s, stream, '1'), 'probe')
})

t.test('upstream 401 and 403 are 401 invalid_token', WAIT, async (t) => {
  const s = await build(t)
  for (const token of ['nobody-knows-me', 'status-401', 'status-403']) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(stream.status, 401, token)
    t.match(stream.headers['www-authenticate'], /^Bearer .*error="invalid_token"/)
    t.match(jsonBody(stream), { statusCode: 401, code: 'NOTIFY_TOKEN_REJECTED' })
    t.equal(stream.headers['retry-after'], undefined)
  }
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('upstream 5xx is 503 with Retry-After, never 401', WAIT, async (t) => {
  const s = await build(t)
  for (const token of ['status-500', 'status-502', 'status-503']) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(stream.status, 503, token)
    t.match(stream.headers['retry-after'], /^\d+$/)
    t.equal(stream.headers['www-authenticate'], undefined)
    t.match(jsonBody(stream), { statusCode: 503, code: 'NOTIFY_AUTH_UNAVAILABLE' })
  }
})

t.test('an upstream answer that is neither success nor refusal is 503', WAIT, async (t) => {
  const s = await build(t)
  for (const token of ['status-404', 'status-429', 'status-302']) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(stream.status, 503, token)
  }
})

t.test('an answer over 64 KiB is 503 and read no further; the pool still works after it', WAIT, async (t) => {
  const s = await build(t)
  let chunkedFinished: (finished: boolean) => void = () => {}
  const chunkedClosed = new Promise<boolean>((resolve) => (chunkedFinished = resolve))
  s.upstream.handle((token, _req, res) => {
    if (token === 'user-after') {
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.end(JSON.stringify({ user_id: 'after' }))
    }
    // 'declared' says its size up front; 'chunked' would send 8 MiB if read to the end.
    const chunk = Buffer.alloc(16 * 1024, 0x20)
    res.writeHead(200, token === 'declared'
      ? { 'content-type': 'application/json', 'content-length': String(100 * 1024) }
      : { 'content-type': 'application/json' })
    let sent = 0
    const pump = () => {
      while (sent < (token === 'declared' ? 100 * 1024 : 8 * 1024 * 1024)) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      res.end()
    }
    if (token === 'chunked') res.on('close', () => chunkedFinished(res.writableFinished))
    pump()
  })
  for (const token of ['declared', 'chunked']) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(stream.status, 503, token)
    t.match(jsonBody(stream), { code: 'NOTIFY_AUTH_UNAVAILABLE' })
  }
  t.equal(await chunkedClosed, false, 'the 8 MiB answer was cut off, not read to its end')
  const after = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-after' })
  t.equal(after.status, 200, 'the next check is answered')
  after.close()
})

t.test('a redirect is not followed: 503, the other server never asked', WAIT, async (t) => {
  const s = await build(t)
  const elsewhere = await startUpstream(t)
  s.upstream.handle((_token, _req, res) => {
    res.writeHead(307, { location: elsewhere.url })
    res.end()
  })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  t.equal(stream.status, 503)
  t.equal(elsewhere.totalCalls(), 0, 'the token did not travel to the Location')
})

t.test('the query string of AUTH_UPSTREAM_URL is sent', WAIT, async (t) => {
  const upstream = await startUpstream(t)
  const paths: string[] = []
  upstream.handle((_token, req, res) => {
    paths.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ user_id: 'q' }))
  })
  const s = await build(t, { env: { AUTH_UPSTREAM_URL: `${upstream.url}?audience=notify&x=%20` } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-q' })
  t.equal(stream.status, 200)
  stream.close()
  t.same(paths, ['/me?audience=notify&x=%20'])
})

t.test('an upstream timeout is 503', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_UPSTREAM_TIMEOUT_MS: '200' } })
  const started = Date.now()
  // The upstream would answer after 20 s (its timer ends with the connection):
  // far enough from the 200 ms timeout that a loaded machine cannot blur them.
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer slow-20000-x' })
  t.equal(stream.status, 503)
  t.match(stream.headers['retry-after'], /^\d+$/)
  t.ok(Date.now() - started < 10_000, 'answered at the timeout, not when the upstream finally replied')
  t.equal(s.upstream.calls.get('slow-20000-x'), 1, 'the upstream was asked')
})

t.test('an answer whose body stalls after its status line is 503 at the timeout, and the pool still works', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_UPSTREAM_TIMEOUT_MS: '200' } })
  s.upstream.handle((token, _req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    if (token === 'user-after') return res.end(JSON.stringify({ user_id: 'after' }))
    // Half an answer, then nothing: the status says 200, the body never ends.
    res.write('{"user_id": "sta')
  })
  const started = Date.now()
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer stalled' })
  t.equal(stream.status, 503)
  t.match(jsonBody(stream), { code: 'NOTIFY_AUTH_UNAVAILABLE' })
  t.ok(Date.now() - started < 10_000, 'answered at the timeout, not never')
  const after = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-after' })
  t.equal(after.status, 200, 'the next check is answered')
  after.close()
})

t.test('an unreachable upstream is 503', WAIT, async (t) => {
  const s = await build(t)
  await s.upstream.close()
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  t.equal(stream.status, 503)
  t.match(stream.headers['retry-after'], /^\d+$/)
  t.match(jsonBody(stream), { code: 'NOTIFY_AUTH_UNAVAILABLE' })
})

t.test('an upstream URL on a closed port is 503', WAIT, async (t) => {
  const port = await freePort()
  const s = await build(t, { env: { AUTH_UPSTREAM_URL: `http://127.0.0.1:${port}/me` } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-1' })
  t.equal(stream.status, 503)
  t.match(stream.headers['retry-after'], /^\d+$/)
})

t.test('a 2xx answer without a usable user id is 503 (broken contract), not a stream', WAIT, async (t) => {
  const s = await build(t)
  const answers: Record<string, string> = {
    'no-field': JSON.stringify({ id: 'u1' }),
    'null-field': JSON.stringify({ user_id: null }),
    'empty-field': JSON.stringify({ user_id: '' }),
    'object-field': JSON.stringify({ user_id: { id: 1 } }),
    'float-field': JSON.stringify({ user_id: 1.5 }),
    'array-body': JSON.stringify([{ user_id: 'u1' }]),
    'not-json': 'user_id=u1',
    'empty-body': '',
  }
  s.upstream.handle((token, _req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(answers[token] ?? '{}')
  })
  for (const token of Object.keys(answers)) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(stream.status, 503, token)
    t.match(stream.headers['retry-after'], /^\d+$/)
  }
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('AUTH_UPSTREAM_USER_FIELD names the field holding the user id', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_UPSTREAM_USER_FIELD: 'uid' } })
  s.upstream.handle((token, _req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(token === 'right' ? { user_id: 'wrong', uid: 'u7' } : { user_id: 'u8' }))
  })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer right' })
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'u7'), 'probe', 'the user is taken from `uid`, not `user_id`')
  const without = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer only-default-field' })
  t.equal(without.status, 503, 'an answer with only `user_id` does not satisfy the contract')
})

t.test('a numeric user id from the upstream works', WAIT, async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer num-42' })
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, '42'), 'probe')
})

t.test('concurrent connects with one token share a single upstream call', WAIT, async (t) => {
  const s = await build(t)
  const token = 'slow-500-shared'
  const streams = await Promise.all(
    Array.from({ length: 20 }, () => openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })),
  )
  t.same(streams.map((st) => st.status), Array(20).fill(200))
  t.equal(s.upstream.calls.get(token), 1, 'exactly one upstream call')
  t.equal(s.app.notifier.hub.size, 20)
  t.equal(s.app.notifier.hub.users, 1)
})

t.test('concurrent connects share one failure too, and it is not kept', WAIT, async (t) => {
  const s = await build(t)
  let answer = 502
  s.upstream.handle((_token, _req, res) => {
    const status = answer
    setTimeout(() => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(status === 200 ? { user_id: 'back' } : { error: 'down' }))
    }, 300)
  })
  const failed = await Promise.all(
    Array.from({ length: 10 }, () => openStream(t, `${s.base}/notify`, { authorization: 'Bearer flaky' })),
  )
  t.same(failed.map((st) => st.status), Array(10).fill(503))
  t.equal(s.upstream.calls.get('flaky'), 1, 'one call for all ten')
  answer = 200
  const ok = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer flaky' })
  t.equal(ok.status, 200, 'the failure was not cached')
  t.equal(s.upstream.calls.get('flaky'), 2)
})

t.test('a positive answer is cached for AUTH_CACHE_TTL_MS', WAIT, async (t) => {
  let offset = 0
  const now = () => Date.now() + offset
  const s = await build(t, { env: { AUTH_CACHE_TTL_MS: '60000' }, deps: { now } })
  const first = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-c' })
  first.close()
  const second = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-c' })
  t.equal(second.status, 200)
  t.equal(s.upstream.calls.get('user-c'), 1, 'no new call within the TTL')
  t.equal(await deliversTo(s, second, 'c'), 'probe', 'the cached principal is the right user')

  const other = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-d' })
  t.equal(other.status, 200)
  t.equal(s.upstream.calls.get('user-d'), 1, 'another token is not served from the cache')

  offset = 60_001
  const third = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-c' })
  t.equal(third.status, 200)
  t.equal(s.upstream.calls.get('user-c'), 2, 'asked again once the TTL has passed')
})

t.test('AUTH_CACHE_TTL_MS=0: every connect asks the upstream', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_CACHE_TTL_MS: '0' } })
  for (let i = 0; i < 3; i++) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-nc' })
    t.equal(stream.status, 200)
    stream.close()
  }
  t.equal(s.upstream.calls.get('user-nc'), 3)
})

t.test('onCacheLookup reports miss, hit and shared; AUTH_CACHE_TTL_MS=0 never hits', WAIT, async (t) => {
  const upstream = await startUpstream(t)
  // The authenticator itself, as the app builds it, with the callback the app's metrics use.
  const authenticator = (env: Record<string, string>) => {
    const lookups: CacheLookup[] = []
    const config = loadConfig({ AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream.url, ...env })
    const { authenticate, close } = createAuthenticator(config, new LogLimiter(pino({ level: 'silent' })), {
      onCacheLookup: (r) => lookups.push(r),
    })
    t.teardown(close)
    const as = (token: string) =>
      authenticate({ headers: { authorization: `Bearer ${token}` }, cookies: {}, query: {} } as unknown as FastifyRequest)
    return { as, lookups }
  }
  const cached = authenticator({})
  t.match(await cached.as('user-e'), { userId: 'e' })
  t.match(await cached.as('user-e'), { userId: 'e' })
  t.same(cached.lookups, ['miss', 'hit'])
  const three = await Promise.all([cached.as('slow-200-f'), cached.as('slow-200-f'), cached.as('slow-200-f')])
  t.same(three.map((p) => p.userId), ['f', 'f', 'f'])
  t.same(cached.lookups, ['miss', 'hit', 'miss', 'shared', 'shared'])
  t.equal(upstream.calls.get('slow-200-f'), 1)
  await t.rejects(cached.as('nobody'), /Invalid or expired token/)
  await t.rejects(cached.as('nobody'), /Invalid or expired token/)
  t.same(cached.lookups.slice(-2), ['miss', 'miss'], 'a refusal is not cached')

  const uncached = authenticator({ AUTH_CACHE_TTL_MS: '0' })
  await uncached.as('user-e')
  await Promise.all([uncached.as('user-e'), uncached.as('user-e')])
  t.same(uncached.lookups, ['miss', 'miss', 'shared'], 'no cache, but concurrent checks still share a call')
})

t.test('negative answers are not cached', WAIT, async (t) => {
  const s = await build(t)
  for (const token of ['nobody-knows-me', 'status-500']) {
    for (let i = 0; i < 2; i++) await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
    t.equal(s.upstream.calls.get(token), 2, `${token} asked each time`)
  }
  // A token refused once and accepted later (e.g. just issued) is not stuck.
  let known = false
  s.upstream.handle((_token, _req, res) => {
    res.writeHead(known ? 200 : 401, { 'content-type': 'application/json' })
    res.end(JSON.stringify(known ? { user_id: 'late' } : { error: 'unknown' }))
  })
  t.equal((await openStream(t, `${s.base}/notify`, { authorization: 'Bearer fresh' })).status, 401)
  known = true
  t.equal((await openStream(t, `${s.base}/notify`, { authorization: 'Bearer fresh' })).status, 200)
})

t.test('upstream connections are kept alive across checks', WAIT, async (t) => {
  const s = await build(t, { env: { AUTH_CACHE_TTL_MS: '0' } })
  const checks = 6
  for (let i = 0; i < checks; i++) {
    const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-ka' })
    t.equal(stream.status, 200)
    stream.close()
  }
  t.equal(s.upstream.calls.get('user-ka'), checks)
  t.ok(s.upstream.connections() < checks, `${s.upstream.connections()} connections for ${checks} calls`)
})

t.test('a burst of checks uses at most AUTH_IN_FLIGHT upstream connections, all answered', WAIT, async (t) => {
  // Not a test of the timeout: one long enough that no check of the burst, slot
  // wait included, reaches it on a loaded machine (the default is 2 s).
  const s = await build(t, { broker: 'embedded', env: { AUTH_CACHE_TTL_MS: '0', AUTH_UPSTREAM_TIMEOUT_MS: '10000' } })
  const n = AUTH_IN_FLIGHT * 2 + 10
  const streams = await Promise.all(
    Array.from({ length: n }, (_, i) => openStream(t, `${s.base}/notify`, { authorization: `Bearer slow-30-b${i}` })),
  )
  t.same(new Set(streams.map((st) => st.status)), new Set([200]), `all ${n} admitted`)
  t.equal(s.upstream.totalCalls(), n)
  t.ok(s.upstream.connections() <= AUTH_IN_FLIGHT, `${s.upstream.connections()} upstream connections for ${n} concurrent checks`)
})

t.test('waiting for an upstream slot counts against the auth timeout', WAIT, async (t) => {
  // The authenticator as the app builds it, called directly, so that every
  // check below starts its timeout in the same tick. (Through /notify, hundreds
  // of connects reach the service over one to five seconds on a loaded
  // machine: the slots keep freeing up and the later checks never wait.)
  const TIMEOUT_MS = 4000
  const WAITED_MS = 500
  const upstream = await startUpstream(t)
  const config = loadConfig({
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: upstream.url,
    AUTH_CACHE_TTL_MS: '0',
    AUTH_UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS),
  })
  const { authenticate, close } = createAuthenticator(config, new LogLimiter(pino({ level: 'silent' })))
  t.teardown(close)
  const outcome = (token: string): Promise<string> =>
    authenticate({ headers: { authorization: `Bearer ${token}` }, cookies: {}, query: {} } as unknown as FastifyRequest).then(
      (principal) => principal.userId,
      (err: { code?: string }) => err.code ?? String(err),
    )
  // The upstream answers when the test says so.
  const answer = (res: ServerResponse, token: string) => {
    if (res.destroyed) return
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ user_id: token }))
  }
  const held: [string, ServerResponse][] = []
  const arrived = new EventEmitter()
  let waiterCall: ServerResponse | undefined
  let waiterMayHaveItsAnswer = false
  upstream.handle((token, _req, res) => {
    if (token !== 'waiter') {
      held.push([token, res])
      arrived.emit('call')
    } else if (waiterMayHaveItsAnswer) answer(res, token)
    else waiterCall = res
  })

  // Every slot is taken, and one more check waits behind them; all their timeouts start now.
  const holders = Array.from({ length: AUTH_IN_FLIGHT }, (_, i) => outcome(`holder-${i}`))
  const waiter = outcome('waiter')
  // The waiter's answer is given just after its timeout: Node runs due timers in
  // deadline order, so its timeout (armed above, 50 ms sooner) always comes
  // first. Yet the answer comes well within TIMEOUT_MS of the moment the waiter
  // got its slot (WAITED_MS or more after it asked): had its timeout started
  // only with its own call, it would be admitted.
  const late = setTimeout(() => {
    waiterMayHaveItsAnswer = true
    if (waiterCall !== undefined) answer(waiterCall, 'waiter')
  }, TIMEOUT_MS + 50)
  t.teardown(() => clearTimeout(late))
  const since = performance.now()
  const waited = new Promise((resolve) => setTimeout(resolve, WAITED_MS))
  while (held.length < AUTH_IN_FLIGHT) await once(arrived, 'call')
  t.comment(`all ${AUTH_IN_FLIGHT} at the upstream after ${(performance.now() - since).toFixed(0)} ms`)
  await waited
  t.equal(upstream.calls.get('waiter'), undefined, `${AUTH_IN_FLIGHT} checks in flight: the next one waits (no upstream call yet)`)
  // The holders are answered within their timeout (TIMEOUT_MS is "long enough":
  // they have all been at the upstream for a while); the waiter takes a slot.
  for (const [token, res] of held) answer(res, token)
  t.same(await Promise.all(holders), Array.from({ length: AUTH_IN_FLIGHT }, (_, i) => `holder-${i}`), 'the checks holding the slots are admitted')
  t.equal(await waiter, 'NOTIFY_AUTH_UNAVAILABLE', 'the check that waited for its slot is told to come back (503) at its timeout')
  t.comment(`the waiter's own call ${upstream.calls.get('waiter') === 1 ? 'reached the upstream and was cut short' : 'never started'}`)
})

t.test('refusals and errors do not cost a new upstream connection each', WAIT, async (t) => {
  const s = await build(t)
  const tokens = ['nobody-1', 'status-500', 'nobody-2', 'status-502', 'status-401', 'nobody-3']
  for (const token of tokens) await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })
  t.equal(s.upstream.totalCalls(), tokens.length)
  t.ok(s.upstream.connections() < tokens.length, `${s.upstream.connections()} connections for ${tokens.length} calls`)
})

t.test('HEAD /notify does not open a stream', WAIT, async (t) => {
  const s = await build(t)
  const req = request(`${s.base}/notify`, { method: 'HEAD', headers: { authorization: 'Bearer user-1' }, agent: false })
  t.teardown(() => req.destroy())
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  t.not(res.statusCode, 200)
  t.not(res.headers['content-type'], SSE_HEADERS['content-type'])
  t.equal(s.app.notifier.hub.size, 0)
  t.equal(s.app.notifier.hub.stats.opened, 0)
  t.equal(s.upstream.totalCalls(), 0, 'no token check either')
})
