// INTROSPECTION_UNTYPED_TOKENS against a real provider (oidc-provider), which
// names its access tokens (token_type Bearer) and its refresh tokens only by
// leaving token_type out: the setting reaches the judge, and the default keeps
// refresh tokens out. The answer shapes of other providers are judged in
// test/introspection-answer.test.ts.
import t from 'tap'
import { build, type Built } from './helpers/app.js'
import { startOidc, type TestOidc } from './helpers/oidc.js'
import { bearer, deliversTo, errorCode } from './helpers/probe.js'
import { openStream } from './helpers/sse.js'

const WAIT = { timeout: 60_000 }

interface Teardown {
  teardown(fn: () => unknown): void
}

async function setup(t: Teardown, env: Record<string, string> = {}): Promise<{ s: Built; oidc: TestOidc }> {
  const oidc = await startOidc(t)
  const s = await build(t, { env: { ...oidc.introspectionEnv(), ...env } })
  return { s, oidc }
}

t.test('default (refuse): a refresh token is 401 and the warning names the setting', WAIT, async (t) => {
  const { s, oidc } = await setup(t)
  const refused = await openStream(t, `${s.base}/notify`, bearer(await oidc.refreshToken('alice')))
  t.equal(refused.status, 401)
  t.equal(errorCode(refused), 'NOTIFY_TOKEN_REJECTED')
  t.match(s.logs.find((l) => /without token_type/.test(String(l.msg))), {
    level: 40,
    msg: /INTROSPECTION_UNTYPED_TOKENS/,
  })
  const stream = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('alice')))
  t.equal(stream.status, 200, 'an access token (token_type Bearer) still opens')
  t.equal(await deliversTo(s, stream, 'alice'), 'probe')
})

t.test('INTROSPECTION_UNTYPED_TOKENS=refuse says the same', WAIT, async (t) => {
  const { s, oidc } = await setup(t, { INTROSPECTION_UNTYPED_TOKENS: 'refuse' })
  const refused = await openStream(t, `${s.base}/notify`, bearer(await oidc.refreshToken('alice')))
  t.equal(refused.status, 401)
})

t.test('accept: what names no kind gets in, here oidc-provider refresh tokens (why the README says refuse for it)', WAIT, async (t) => {
  const { s, oidc } = await setup(t, { INTROSPECTION_UNTYPED_TOKENS: 'accept' })
  const refresh = await openStream(t, `${s.base}/notify`, bearer(await oidc.refreshToken('alice')))
  t.equal(refresh.status, 200, 'the setting reached the judge')
  t.equal(await deliversTo(s, refresh, 'alice'), 'probe')
  const access = await openStream(t, `${s.base}/notify`, bearer(await oidc.opaqueToken('bob')))
  t.equal(access.status, 200, 'access tokens are unaffected')
  // Named Bearer but for no user: accept changes nothing for it.
  const machine = await openStream(t, `${s.base}/notify`, bearer(await oidc.clientCredentialsToken()))
  t.equal(machine.status, 401, 'a client-credentials token is still refused')
  t.notOk(s.logs.some((l) => /without token_type/.test(String(l.msg))), 'nothing refused as untyped, nothing logged')
})
