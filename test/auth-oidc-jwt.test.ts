// AUTH_MODE=jwt against a real OpenID Connect provider (oidc-provider): JWT
// access tokens it issues for this service's resource indicator, checked
// against its published JWKS; key rotation while the service runs; 503 when
// an unknown key cannot be fetched.
import t from 'tap'
import type { AppDeps } from '../src/app.js'
import { build, type Built } from './helpers/app.js'
import { RESOURCES, startOidc, type TestOidc } from './helpers/oidc.js'
import { openStream } from './helpers/sse.js'
import { bearer, deliversTo, errorCode } from './helpers/probe.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

// Tests wait on stream events; a regression that leaves one waiting is reported against that test.
// Generous: a test also starts redis-server, an upstream or a provider and builds the app,
// and tears them down: on a loaded machine (load ~20 on 2 cores) one took over 15 s.
const WAIT = { timeout: 60_000 }
const JWKS = '/jwks'


// No refetch cooldown, so an unknown kid is looked up at once (production waits up to 30 s).
async function setup(t: Teardown, deps: AppDeps = { jwks: { cooldownMs: 0 } }): Promise<{ s: Built; oidc: TestOidc }> {
  const oidc = await startOidc(t)
  const s = await build(t, { env: oidc.jwtEnv(), deps })
  return { s, oidc }
}

t.test('a JWT access token from the provider opens a stream for its subject', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const stream = await openStream(t, `${s.base}/notify`, bearer(await oidc.jwtToken('alice')))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'alice'), 'probe')
  t.equal(oidc.requests(JWKS), 1, 'the key set was fetched from the jwks_uri of the discovery document')
  t.equal(s.app.notifier.hub.pendingExpiries, 1, 'the stream is scheduled to end at the token exp')

  const second = await openStream(t, `${s.base}/notify`, bearer(await oidc.jwtToken('bob')))
  t.equal(second.status, 200)
  t.equal(oidc.requests(JWKS), 1, 'the key set is cached')
  t.equal(oidc.requests('/token/introspection'), 0, 'jwt mode verifies locally')
})

t.test('refused: expired, another audience, a key the provider never published', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const impostor = await oidc.impostor()
  const cases: Record<string, string> = {
    expired: await oidc.jwtToken('alice', { exp: Math.floor(Date.now() / 1000) - 5 }),
    'issued for another resource server': await oidc.jwtToken('alice', { resource: RESOURCES.other }),
    'same issuer name, unpublished key': await impostor.jwtToken('alice'),
  }
  for (const [name, token] of Object.entries(cases)) {
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 401, name)
    t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED', name)
    t.match(stream.headers['www-authenticate'], /error="invalid_token"/, name)
  }
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await oidc.jwtToken('alice')))).status, 200, 'control')
})

t.test('key rotation at the provider is picked up without a restart', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const before = await oidc.jwtToken('alice')
  t.equal((await openStream(t, `${s.base}/notify`, bearer(before))).status, 200)
  t.equal(oidc.requests(JWKS), 1)

  const kid = await oidc.rotate({ keepOld: true })
  const rotated = await openStream(t, `${s.base}/notify`, bearer(await oidc.jwtToken('bob', { kid })))
  t.equal(rotated.status, 200, 'a token signed with the new kid is accepted')
  t.equal(oidc.requests(JWKS), 2, 'the unknown kid made the service fetch the key set again')
  t.equal(await deliversTo(s, rotated, 'bob'), 'probe')

  const old = await openStream(t, `${s.base}/notify`, bearer(before))
  t.equal(old.status, 200, 'a token of the old key is still accepted while the provider publishes it')
  t.equal(oidc.requests(JWKS), 2)
})

t.test('provider down while a token names an unknown kid: 503 with Retry-After, then recovery', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await oidc.jwtToken('alice')))).status, 200)
  const kid = await oidc.rotate()
  const token = await oidc.jwtToken('alice', { kid })

  await oidc.stop()
  const down = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(down.status, 503)
  t.equal(errorCode(down), 'NOTIFY_AUTH_UNAVAILABLE')
  t.match(down.headers['retry-after'], /^\d+$/)
  t.equal(down.headers['www-authenticate'], undefined)

  oidc.outage({ status: 503 })
  await oidc.start()
  const failing = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(failing.status, 503, 'a provider answering 503 is unavailable too')

  oidc.outage(undefined)
  const back = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(back.status, 200, 'the key is fetched once the provider is back')
})
