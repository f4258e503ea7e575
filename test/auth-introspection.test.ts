// AUTH_MODE=introspection against a real OpenID Connect provider (oidc-provider):
// its RFC 7662 endpoint decides, 401 versus 503, the cache never outlives a
// token, expiry ends the stream in-band, and no secret reaches the logs.
import type { FastifyRequest } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { createAuthenticator } from '../src/auth/authenticate.js'
import { basicCredentials } from '../src/auth/introspection.js'
import type { CacheLookup } from '../src/auth/principal.js'
import { loadConfig } from '../src/config.js'
import { LogLimiter } from '../src/log-limiter.js'
import { build, type Built } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { RESOURCES, SERVICE_CLIENT, startOidc, type TestOidc } from './helpers/oidc.js'
import { openStream } from './helpers/sse.js'
import { bearer, deliversTo, errorCode } from './helpers/probe.js'

// Tests wait on stream events; a regression that leaves one waiting is reported against that test.
// Generous: a test also starts redis-server, an upstream or a provider and builds the app,
// and tears them down: on a loaded machine (load ~20 on 2 cores) one took over 15 s.
const WAIT = { timeout: 60_000 }
const INTROSPECT = '/token/introspection'


interface Teardown {
  teardown(fn: () => unknown): void
}

async function setup(t: Teardown, env: Record<string, string> = {}, now?: () => number): Promise<{ s: Built; oidc: TestOidc }> {
  const oidc = await startOidc(t)
  const s = await build(t, { env: { ...oidc.introspectionEnv(), ...env }, ...(now && { deps: { now } }) })
  return { s, oidc }
}

t.test('a valid opaque token opens a stream for its subject', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const stream = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('alice')))
  t.equal(stream.status, 200, 'client_secret_basic with a secret holding ":+/%& " was accepted by the provider')
  t.equal(await deliversTo(s, stream, 'alice'), 'probe')
  t.equal(oidc.requests(INTROSPECT), 1)
  t.equal(s.app.notifier.hub.pendingExpiries, 1, 'the stream is scheduled to end at the token exp')
  t.equal(s.upstream.totalCalls(), 0, 'introspection mode never asks the upstream')
})

t.test('tokens the provider does not vouch for are 401 invalid_token', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const revoked = await oidc.opaqueToken('alice')
  await oidc.revoke(revoked)
  const cases: Record<string, string> = {
    garbage: 'not-a-token-the-provider-issued',
    revoked,
    expired: await oidc.opaqueToken('alice', { exp: Math.floor(Date.now() / 1000) - 5 }),
    // The provider will not introspect JWTs (400 unsupported_token_type).
    'a JWT access token': await oidc.jwtToken('alice'),
    'a refresh token': await oidc.refreshToken('alice'),
    'a client-credentials token (no user)': await oidc.clientCredentialsToken(),
  }
  for (const [name, token] of Object.entries(cases)) {
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 401, name)
    t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED', name)
    t.match(stream.headers['www-authenticate'], /error="invalid_token"/, name)
    t.equal(stream.headers['retry-after'], undefined, name)
  }
  t.equal(oidc.requests(INTROSPECT), Object.keys(cases).length, 'each was asked about, none answered from a cache')
  t.ok(s.logs.some((l) => /without token_type/.test(String(l.msg))), 'a refresh token: a warning that names token_type')
  t.match(s.logs.find((l) => /without a usable user id/.test(String(l.msg))), { level: 50, claim: 'sub' }, 'no user: an error log')
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('active at the provider but past exp by our clock: 401', WAIT, async (t) => {
  // The service's clock runs an hour ahead of the provider's.
  const { s, oidc } = await setup(t, {}, () => Date.now() + 3_600_000)
  const stream = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('alice', { lifetimeS: 600 })))
  t.equal(stream.status, 401)
  t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED')
  t.equal(oidc.requests(INTROSPECT), 1, 'the provider was asked, and said active')
})

t.test('INTROSPECTION_USER_CLAIM names the member holding the user id', WAIT, async (t) => {
  const { s, oidc } = await setup(t, { INTROSPECTION_USER_CLAIM: 'client_id' })
  const stream = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('alice')))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'web-app'), 'probe', 'the user is taken from client_id, not sub')
})

t.test('the stream ends with auth-expired at exp, and the cache does not outlive the token', WAIT, async (t) => {
  // A cache TTL far longer than the token's life: the entry must still end at exp.
  // The service judges exp by its own clock (AppDeps.now): on connect, in the
  // cache and in the hub. A token that really expired 2 to 3 s after it was
  // minted raced the test under CPU load (the probe or the second connect could
  // come after exp). So the provider holds it active for a minute, and the
  // service's clock stands 250 ms short of its exp (the hub rechecks every
  // 250 ms) until the test lets it run.
  const exp = Math.floor(Date.now() / 1000) + 60
  let now = (): number => exp * 1000 - 250
  const { s, oidc } = await setup(t, { AUTH_CACHE_TTL_MS: '600000' }, () => now())
  const hub = s.app.notifier.hub
  const token = await oidc.opaqueToken('alice', { exp })
  const stream = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'alice'), 'probe', 'events flow before expiry')
  const again = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(again.status, 200)
  t.equal(oidc.requests(INTROSPECT), 1, 'the second connect was answered from the cache')
  again.close()
  await hubSize(hub, 1)

  // The clock reaches exp and runs on.
  const from = Date.now()
  now = () => exp * 1000 + (Date.now() - from)
  await stream.ended
  t.same(stream.events.map((e) => e.event), ['probe', 'auth-expired'], 'auth-expired is the last event')
  await hubSize(hub, 0)
  const after = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(after.status, 401, 'refused after exp although AUTH_CACHE_TTL_MS has not passed')
  t.equal(oidc.requests(INTROSPECT), 2, 'the provider was asked again: the cache entry ended at exp')
})

t.test('within AUTH_CACHE_TTL_MS a second connect makes no introspection call', WAIT, async (t) => {
  const { s, oidc } = await setup(t, { AUTH_CACHE_TTL_MS: '60000' })
  const token = await oidc.opaqueToken('alice')
  for (let i = 0; i < 3; i++) {
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 200)
    stream.close()
  }
  t.equal(oidc.requests(INTROSPECT), 1)
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('bob')))).status, 200)
  t.equal(oidc.requests(INTROSPECT), 2, 'another token is not served from the cache')
})

t.test('onCacheLookup: miss, hit, shared; AUTH_CACHE_TTL_MS=0 never hits', WAIT, async (t) => {
  const oidc = await startOidc(t)
  const authenticator = (env: Record<string, string>) => {
    const lookups: CacheLookup[] = []
    const config = loadConfig({ ...oidc.introspectionEnv(), ...env })
    const logs = new LogLimiter(pino({ level: 'silent' }))
    const { authenticate, close } = createAuthenticator(config, logs, { onCacheLookup: (r) => lookups.push(r) })
    t.teardown(close)
    const as = (token: string) => authenticate({ headers: bearer(token), cookies: {}, query: {} } as unknown as FastifyRequest)
    return { as, lookups }
  }
  const cached = authenticator({})
  const token = await oidc.opaqueToken('carol')
  t.match(await cached.as(token), { userId: 'carol' })
  t.match(await cached.as(token), { userId: 'carol' })
  t.same(cached.lookups, ['miss', 'hit'])
  const other = await oidc.opaqueToken('dave')
  const both = await Promise.all([cached.as(other), cached.as(other)])
  t.same(both.map((p) => p.userId), ['dave', 'dave'])
  t.same(cached.lookups, ['miss', 'hit', 'miss', 'shared'])
  t.equal(oidc.requests(INTROSPECT), 2, 'one call per token')

  const uncached = authenticator({ AUTH_CACHE_TTL_MS: '0' })
  await uncached.as(token)
  await uncached.as(token)
  t.same(uncached.lookups, ['miss', 'miss'])
  t.equal(oidc.requests(INTROSPECT), 4)
})

t.test('wrong client credentials: 503 with Retry-After, an error log, no secret or token logged', WAIT, async (t) => {
  const wrong = `${SERVICE_CLIENT.secret}-but-wrong`
  const { s, oidc } = await setup(t, { INTROSPECTION_CLIENT_SECRET: wrong })
  const token = await oidc.opaqueToken('alice')
  const stream = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(stream.status, 503)
  t.equal(errorCode(stream), 'NOTIFY_AUTH_UNAVAILABLE')
  t.match(stream.headers['retry-after'], /^\d+$/)
  t.equal(stream.headers['www-authenticate'], undefined, 'not the client\'s fault')
  t.match(s.logs.find((l) => /client credentials/.test(String(l.msg))), {
    level: 50,
    status: 401,
    clientId: SERVICE_CLIENT.id,
    msg: /INTROSPECTION_CLIENT_SECRET/,
  })
  const raw = s.rawLogs()
  for (const secret of [wrong, SERVICE_CLIENT.secret, token]) t.notOk(raw.includes(secret), 'no secret or token in the logs')
  t.notOk(raw.includes(basicCredentials(SERVICE_CLIENT.id, wrong).slice(6)), 'no Basic credentials in the logs')
})

t.test('provider down, failing or slow: 503 with Retry-After, and recovery', WAIT, async (t) => {
  // The slow provider answers only after the service has given up (its timer
  // ends with the connection), so the timeout need only be long enough for
  // the recoveries: an introspection on a loaded machine (300 ms was not always).
  const { s, oidc } = await setup(t, { AUTH_UPSTREAM_TIMEOUT_MS: '2000', AUTH_CACHE_TTL_MS: '0' })
  const token = await oidc.opaqueToken('alice')
  const outages: [string, () => Promise<void> | void][] = [
    ['closed', () => oidc.stop()],
    ['answering 503', () => oidc.outage({ status: 503 })],
    ['answering 500', () => oidc.outage({ status: 500 })],
    ['slower than the timeout', () => oidc.outage({ delayMs: 60_000 })],
  ]
  for (const [name, breakIt] of outages) {
    await breakIt()
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 503, name)
    t.equal(errorCode(stream), 'NOTIFY_AUTH_UNAVAILABLE', name)
    t.match(stream.headers['retry-after'], /^\d+$/, name)
    if (name === 'closed') await oidc.start()
    oidc.outage(undefined)
    const back = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(back.status, 200, `${name}: recovers when the provider is back`)
    back.close()
  }
  t.notOk(s.rawLogs().includes(token), 'the token is never logged')
})

t.test('INTROSPECTION_AUDIENCE: only tokens issued for this service open a stream', WAIT, async (t) => {
  const { s, oidc } = await setup(t, { INTROSPECTION_AUDIENCE: RESOURCES.opaque })
  const mine = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('alice')))
  t.equal(mine.status, 200, 'aud is this service')
  t.equal(await deliversTo(s, mine, 'alice'), 'probe')
  const other = await setup(t, { INTROSPECTION_AUDIENCE: 'urn:somebody-else' })
  const theirs = await openStream(t, `${other.s.base}/notify`, bearer(await other.oidc.opaqueToken('alice')))
  t.equal(theirs.status, 401, 'aud names another resource server')
  t.equal(errorCode(theirs), 'NOTIFY_TOKEN_REJECTED')
})
