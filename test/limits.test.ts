// Limits on /notify: streams in total (503), streams per user (429), connects
// per client IP and minute (429); each with Retry-After and counted as
// opened{outcome="limited"}. TRUST_PROXY decides whose IP X-Forwarded-For is.
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { type Built, build } from './helpers/app.js'
import { type Metrics, metricsOf } from './helpers/metrics.js'
import { openStream, type TestStream } from './helpers/sse.js'

const OUTCOMES = ['ok', 'unauthorized', 'auth_unavailable', 'limited', 'draining']
const outcomes = (nonZero: Record<string, number>): Record<string, number> =>
  Object.fromEntries(OUTCOMES.map((k) => [k, nonZero[k] ?? 0]))

const auth = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** Every observation of the auth histogram, by "mode/outcome" (zeros left out). */
function authObservations(m: Metrics): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of m.samples) {
    if (s.name !== 'notify_auth_duration_seconds_count' || s.value === 0) continue
    out[`${s.labels.mode}/${s.labels.outcome}`] = s.value
  }
  return out
}

/** A refusal: status, catalog code, and a Retry-After of whole seconds within [1, max]. */
function refused(t: Test, st: TestStream, status: number, code: string, maxRetryAfter = 3600): void {
  t.equal(st.status, status, `${status} ${code}`)
  let body: { statusCode?: number; code?: string } = {}
  try {
    body = JSON.parse(st.body)
  } catch {
    t.fail(`not a JSON body: ${st.body.slice(0, 200)}`)
  }
  t.equal(body.code, code)
  t.equal(body.statusCode, status)
  const retryAfter = st.headers['retry-after']
  t.match(retryAfter, /^\d+$/, `retry-after is whole seconds (${retryAfter})`)
  const n = Number(retryAfter)
  t.ok(n >= 1 && n <= maxRetryAfter, `retry-after ${n} in [1, ${maxRetryAfter}]`)
}

/** Closes a stream and waits until the hub has let it go. */
async function closeStream(s: Built, st: TestStream): Promise<void> {
  const closed = once(s.app.notifier.hub, 'close')
  st.close()
  await closed
}

/**
 * Replaces the upstream's rules: `user-<id>` answers at once, `token` only once
 * release() is called (`asked` resolves when its call has arrived), anything else 401.
 */
function holdUpstream(s: Built, token: string, userId: string) {
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  let arrived!: () => void
  const asked = new Promise<void>((resolve) => (arrived = resolve))
  s.upstream.handle((tok, _req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (tok === token) {
      arrived()
      void released.then(() => send(200, { user_id: userId }))
      return
    }
    const m = /^user-(.+)$/.exec(tok)
    if (m) return send(200, { user_id: m[1] })
    send(401, { error: 'unknown token' })
  })
  return { asked, release }
}

t.test('MAX_CONNECTIONS: the next stream is refused with 503 before authentication; admitted once one closes', async (t) => {
  const s = await build(t, { env: { MAX_CONNECTIONS: '3' } })
  const url = `${s.base}/notify`
  const streams: TestStream[] = []
  for (const u of ['1', '2', '3']) streams.push(await openStream(t, url, auth(`user-${u}`)))
  t.equal(s.app.notifier.hub.size, 3)

  refused(t, await openStream(t, url, auth('user-4')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')
  refused(t, await openStream(t, url, auth('user-1')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')
  t.equal(s.upstream.calls.get('user-4'), undefined, 'refused before the token was checked')
  t.equal(s.upstream.totalCalls(), 3)

  await closeStream(s, streams[0] as TestStream)
  const again = await openStream(t, url, auth('user-4'))
  t.equal(again.status, 200, 'admitted once a stream has closed')
  refused(t, await openStream(t, url, auth('user-5')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')

  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ ok: 4, limited: 3 }))
  t.same(authObservations(m), { 'upstream/ok': 4 }, 'refusals before authentication are not observed')
  t.equal(m.value('notify_streams_open'), 3)
})

t.test('MAX_CONNECTIONS counts authentications in flight', async (t) => {
  const s = await build(t, { env: { MAX_CONNECTIONS: '2' } })
  const url = `${s.base}/notify`
  await openStream(t, url, auth('user-1'))
  const held = holdUpstream(s, 'held-2', '2')
  const pending = openStream(t, url, auth('held-2'))
  await held.asked
  // One stream open, one authentication in flight: the cap of 2 is reached.
  refused(t, await openStream(t, url, auth('user-3')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')
  held.release()
  t.equal((await pending).status, 200, 'the stream whose authentication was in flight opens')
  t.equal(s.app.notifier.hub.size, 2)
  refused(t, await openStream(t, url, auth('user-3')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')
  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ ok: 2, limited: 2 }))
})

t.test('a refused authentication frees its place', async (t) => {
  const s = await build(t, { env: { MAX_CONNECTIONS: '1' } })
  const url = `${s.base}/notify`
  for (let i = 0; i < 3; i++) t.equal((await openStream(t, url, auth('nope'))).status, 401)
  t.equal((await openStream(t, url, auth('status-503'))).status, 503)
  const ok = await openStream(t, url, auth('user-1'))
  t.equal(ok.status, 200, 'failed authentications did not keep their place')
  refused(t, await openStream(t, url, auth('user-2')), 503, 'NOTIFY_TOO_MANY_CONNECTIONS')
  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ ok: 1, unauthorized: 3, auth_unavailable: 1, limited: 1 }))
})

t.test('MAX_CONNECTIONS_PER_USER: 429 for that user only, after authentication', async (t) => {
  const s = await build(t, { env: { MAX_CONNECTIONS_PER_USER: '2' } })
  const url = `${s.base}/notify`
  const a1 = await openStream(t, url, auth('user-a'))
  await openStream(t, url, auth('user-a'))

  refused(t, await openStream(t, url, auth('user-a')), 429, 'NOTIFY_TOO_MANY_USER_STREAMS')
  // The same user under another token form (a JSON number 7 and "7" are one user).
  await openStream(t, url, auth('num-7'))
  await openStream(t, url, auth('user-7'))
  refused(t, await openStream(t, url, auth('num-7')), 429, 'NOTIFY_TOO_MANY_USER_STREAMS')

  const b = await openStream(t, url, auth('user-b'))
  t.equal(b.status, 200, 'another user is admitted')
  const bad = await openStream(t, url, auth('nope'))
  t.equal(bad.status, 401, 'a bad token stays 401')
  t.equal(JSON.parse(bad.body).code, 'NOTIFY_TOKEN_REJECTED')

  await closeStream(s, a1)
  const a3 = await openStream(t, url, auth('user-a'))
  t.equal(a3.status, 200, 'admitted again once one of its streams closed')
  refused(t, await openStream(t, url, auth('user-a')), 429, 'NOTIFY_TOO_MANY_USER_STREAMS')
  t.equal(s.app.notifier.hub.size, 5, 'a (2), 7 (2), b')

  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ ok: 6, limited: 3, unauthorized: 1 }))
  // Checked after authentication: the three refused requests were authenticated (ok).
  t.same(authObservations(m), { 'upstream/ok': 9, 'upstream/unauthorized': 1 })
})

t.test('CONNECT_RATE_PER_MIN: every /notify request counts; beyond, 429 before authentication', async (t) => {
  const TOKEN = 'publish-token-0123456789abcdef'
  const s = await build(t, { env: { CONNECT_RATE_PER_MIN: '3', PUBLISH_TOKEN: TOKEN } })
  const url = `${s.base}/notify`

  // Other routes are not limited, and do not use up the /notify budget.
  const others = async (what: string) => {
    for (let i = 0; i < 5; i++) {
      t.equal((await fetch(`${s.base}/healthz`)).status, 200, `${what}: /healthz ${i}`)
      t.equal((await fetch(`${s.base}/readyz`)).status, 200, `${what}: /readyz ${i}`)
      t.equal((await fetch(`${s.base}/metrics`)).status, 200, `${what}: /metrics ${i}`)
      const res = await fetch(`${s.base}/publish`, {
        method: 'POST',
        headers: { ...auth(TOKEN), 'content-type': 'application/json' },
        body: JSON.stringify({ recipient_id: 'x', type: 'n', i }),
      })
      t.equal(res.status, 202, `${what}: /publish ${i}`)
    }
  }
  await others('before')

  t.equal((await openStream(t, url, auth('user-1'))).status, 200)
  t.equal((await openStream(t, url, auth('nope'))).status, 401, 'a refused token counts too')
  t.equal((await openStream(t, url, auth('user-2'))).status, 200)
  const calls = s.upstream.totalCalls()

  refused(t, await openStream(t, url, auth('user-3')), 429, 'NOTIFY_RATE_LIMITED', 60)
  refused(t, await openStream(t, url), 429, 'NOTIFY_RATE_LIMITED', 60)
  refused(t, await openStream(t, url, auth('nope')), 429, 'NOTIFY_RATE_LIMITED', 60)
  t.equal(s.upstream.totalCalls(), calls, 'the upstream saw no call for a refused request')
  t.equal(s.app.notifier.hub.size, 2)

  await others('after')
  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ ok: 2, unauthorized: 1, limited: 3 }))
  t.same(authObservations(m), { 'upstream/ok': 2, 'upstream/unauthorized': 1 }, 'refused requests are not observed')
})

t.test('CONNECT_RATE_PER_MIN is on by default (300)', async (t) => {
  // Passing the default explicitly would prove nothing: remove the helper's override.
  const s = await build(t, { env: { CONNECT_RATE_PER_MIN: '' } })
  const url = `${s.base}/notify`
  for (let i = 0; i < 300; i++) {
    const st = await openStream(t, url, auth('nope'))
    if (st.status !== 401) t.fail(`request ${i + 1}: ${st.status} ${st.body}`)
  }
  refused(t, await openStream(t, url, auth('nope')), 429, 'NOTIFY_RATE_LIMITED', 60)
  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ unauthorized: 300, limited: 1 }))
})

for (const trust of ['false', '10.9.9.9']) {
  t.test(`TRUST_PROXY=${trust}: X-Forwarded-For is ignored; one bucket for 127.0.0.1`, async (t) => {
    const s = await build(t, { env: { CONNECT_RATE_PER_MIN: '2', TRUST_PROXY: trust } })
    const url = `${s.base}/notify`
    t.equal((await openStream(t, url, { ...auth('nope'), 'x-forwarded-for': '10.0.0.1' })).status, 401)
    t.equal((await openStream(t, url, { ...auth('nope'), 'x-forwarded-for': '10.0.0.2' })).status, 401)
    refused(t, await openStream(t, url, { ...auth('nope'), 'x-forwarded-for': '10.0.0.3' }), 429, 'NOTIFY_RATE_LIMITED', 60)
    refused(t, await openStream(t, url, auth('nope')), 429, 'NOTIFY_RATE_LIMITED', 60)
  })
}

for (const trust of ['true', '127.0.0.1', '1', '127.0.0.0/8']) {
  t.test(`TRUST_PROXY=${trust}: one bucket per X-Forwarded-For address`, async (t) => {
    const s = await build(t, { env: { CONNECT_RATE_PER_MIN: '1', TRUST_PROXY: trust } })
    const url = `${s.base}/notify`
    const from = (ip?: string) => openStream(t, url, { ...auth('nope'), ...(ip !== undefined && { 'x-forwarded-for': ip }) })
    t.equal((await from('10.0.0.1')).status, 401, '10.0.0.1: first')
    t.equal((await from('10.0.0.2')).status, 401, '10.0.0.2: its own bucket')
    t.equal((await from()).status, 401, '127.0.0.1 itself: its own bucket')
    refused(t, await from('10.0.0.1'), 429, 'NOTIFY_RATE_LIMITED', 60)
    refused(t, await from('10.0.0.2'), 429, 'NOTIFY_RATE_LIMITED', 60)
    refused(t, await from(), 429, 'NOTIFY_RATE_LIMITED', 60)
    t.equal((await from('10.0.0.3')).status, 401, '10.0.0.3: a fresh bucket')
    const m = await metricsOf(s.base)
    t.same(m.by('notify_streams_opened_total', 'outcome'), outcomes({ unauthorized: 4, limited: 3 }))
  })
}

const base = { AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:9000/me' }

t.test('limits config: defaults and bounds', async (t) => {
  const c = loadConfig(base)
  t.same(c.limits, { maxConnections: 10_000, maxConnectionsPerUser: 20, connectRatePerMin: 300 })
  t.equal(c.trustProxy, false)
  t.equal(loadConfig({ ...base, CONNECT_RATE_PER_MIN: '0' }).limits.connectRatePerMin, 0, '0 disables')
  t.same(loadConfig({ ...base, MAX_CONNECTIONS: '5', MAX_CONNECTIONS_PER_USER: '2', CONNECT_RATE_PER_MIN: '7' }).limits, {
    maxConnections: 5,
    maxConnectionsPerUser: 2,
    connectRatePerMin: 7,
  })
  const bad: [string, string][] = [
    ['MAX_CONNECTIONS', '0'],
    ['MAX_CONNECTIONS', 'many'],
    ['MAX_CONNECTIONS_PER_USER', '0'],
    ['MAX_CONNECTIONS_PER_USER', '1.5'],
    ['CONNECT_RATE_PER_MIN', '-1'],
  ]
  for (const [name, value] of bad) {
    t.throws(() => loadConfig({ ...base, [name]: value }), { name: 'ConfigError', message: new RegExp(name) }, `${name}=${value}`)
  }
})

t.test('TRUST_PROXY parsing (loadConfig)', async (t) => {
  const good: [string, unknown][] = [
    ['false', false],
    ['true', true],
    ['0', 0],
    ['2', 2],
    ['127.0.0.1', ['127.0.0.1']],
    ['10.0.0.1, 10.0.0.0/8 ,192.168.1.0/24', ['10.0.0.1', '10.0.0.0/8', '192.168.1.0/24']],
    ['::1,fd00::/8', ['::1', 'fd00::/8']],
    ['10.0.0.0/32', ['10.0.0.0/32']],
    ['::/0', ['::/0']],
  ]
  for (const [value, want] of good) t.same(loadConfig({ ...base, TRUST_PROXY: value }).trustProxy, want, `TRUST_PROXY=${value}`)
  t.equal(loadConfig({ ...base, TRUST_PROXY: '' }).trustProxy, false, 'empty means unset: false')

  const bad = [
    'yes',
    'TRUE',
    'no',
    '-1',
    '1.5',
    'localhost',
    '10.0.0.256',
    '10.0.0',
    '10.0.0.1,nope',
    '10.0.0.0/8/8',
    '10.0.0.0/x',
    '10.0.0.0/',
    '10.0.0.0/33',
    '::1/129',
  ]
  for (const value of bad) {
    t.throws(() => loadConfig({ ...base, TRUST_PROXY: value }), { name: 'ConfigError', message: /TRUST_PROXY/ }, `TRUST_PROXY=${value}`)
  }
})

t.test('refusals are the same through Fastify (app.inject) as over the wire', async (t) => {
  // GET /notify is served in front of Fastify's router; a request injected into
  // Fastify reaches its route directly, which makes the same checks.
  const s = await build(t, { env: { CONNECT_RATE_PER_MIN: '2' } })
  const inject = (headers: Record<string, string>) => s.app.inject({ method: 'GET', url: '/notify', headers })
  const first = await inject(auth('nope'))
  t.equal(first.statusCode, 401)
  t.match(first.json(), { statusCode: 401, code: 'NOTIFY_TOKEN_REJECTED' })
  t.match(first.headers['www-authenticate'], /^Bearer realm="notify", error="invalid_token"/)
  t.match(first.headers.vary, /Accept/)
  const notAcceptable = await inject({ ...auth('user-1'), accept: 'image/png' })
  t.equal(notAcceptable.statusCode, 406)
  t.match(notAcceptable.json(), { code: 'NOTIFY_NOT_ACCEPTABLE' })
  // Both paths count against the same window: the third connect of the minute is refused on the wire.
  refused(t, await openStream(t, `${s.base}/notify`, auth('user-1')), 429, 'NOTIFY_RATE_LIMITED', 60)
  const limited = await inject(auth('user-1'))
  t.equal(limited.statusCode, 429)
  t.match(limited.json(), { code: 'NOTIFY_RATE_LIMITED' })
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('only GET /notify itself is served in front of the router: other paths and methods are Fastify 404s', async (t) => {
  const s = await build(t)
  for (const [method, path] of [['GET', '/notify/'], ['GET', '/notifyx'], ['GET', '/notify;x'], ['POST', '/notify'], ['DELETE', '/notify?x=1']]) {
    const res = await fetch(`${s.base}${path}`, { method, headers: auth('user-1') })
    t.equal(res.status, 404, `${method} ${path}`)
    t.match(await res.json(), { code: 'NOTIFY_NOT_FOUND' })
  }
  t.equal(s.upstream.totalCalls(), 0, 'none of them reached the auth server')
  t.equal(s.app.notifier.hub.size, 0)
})
