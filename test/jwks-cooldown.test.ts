// JWT_JWKS_COOLDOWN_MS: the least time between two JWKS fetches caused by
// tokens naming an unknown key id, against a real HTTP JWKS server. jose keeps
// the cooldown on the real clock (Date.now(), not AppDeps.now), so "after the
// cooldown" is real time passing: the test waits for the cooldown itself, no
// longer, counted from a moment at or after jose's own timestamp.
import { once } from 'node:events'
import { createServer } from 'node:http'
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { build, type Built } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

const WAIT = { timeout: 60_000 }

async function rsaKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
  const sign = (payload: JWTPayload) => new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid }).sign(privateKey)
  return { jwk, sign }
}

/** A JWKS endpoint that counts its fetches; the test changes the key set as it goes. */
async function startJwks(t: Test, keys: object[]) {
  let current = keys
  let fetches = 0
  const server = createServer((_req, res) => {
    fetches++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys: current }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks.json`,
    publish: (k: object[]) => {
      current = k
    },
    fetches: () => fetches,
  }
}

/** The status /notify answers for a token (a stream that opens is closed at teardown). */
async function statusFor(t: Test, s: Built, token: string): Promise<number> {
  return (await openStream(t, `${s.base}/notify`, { authorization: `Bearer ${token}` })).status
}

t.test('within the cooldown, tokens naming unknown key ids cause no fetch', WAIT, async (t) => {
  const [k1, k2] = await Promise.all([rsaKey('k1'), rsaKey('k2')])
  const jwks = await startJwks(t, [k1.jwk])
  const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_JWKS_URL: jwks.url, JWT_JWKS_COOLDOWN_MS: '600000' } })
  t.equal(await statusFor(t, s, await k1.sign({ sub: 'alice' })), 200)
  t.equal(jwks.fetches(), 1, 'the key set is fetched for the first token')

  jwks.publish([k1.jwk, k2.jwk])
  t.equal(await statusFor(t, s, await k2.sign({ sub: 'bob' })), 401, 'a key id not in the cached set is refused')
  t.equal(await statusFor(t, s, await (await rsaKey('made-up')).sign({ sub: 'mallory' })), 401)
  t.equal(jwks.fetches(), 1, 'two tokens with unknown key ids, no fetch')
  t.equal(await statusFor(t, s, await k1.sign({ sub: 'carol' })), 200, 'known keys still work')
})

t.test('after the cooldown, a token naming an unknown key id fetches the key set again', WAIT, async (t) => {
  const cooldownMs = 1000
  const [k1, k2] = await Promise.all([rsaKey('k1'), rsaKey('k2')])
  const jwks = await startJwks(t, [k1.jwk])
  const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_JWKS_URL: jwks.url, JWT_JWKS_COOLDOWN_MS: String(cooldownMs) } })
  t.equal(await statusFor(t, s, await k1.sign({ sub: 'alice' })), 200)
  // jose stamps the key set when the fetch completes, before this answer: the
  // cooldown has surely passed `cooldownMs` after now.
  const fetchedBy = Date.now()
  t.equal(jwks.fetches(), 1)

  jwks.publish([k1.jwk, k2.jwk])
  const token = await k2.sign({ sub: 'bob' })
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, fetchedBy + cooldownMs - Date.now())))
  t.equal(await statusFor(t, s, token), 200, 'the newly published key is fetched and accepted')
  t.equal(jwks.fetches(), 2, 'one more fetch')
  t.ok(Date.now() - fetchedBy < 30_000, "well within jose's default cooldown (30 s): the setting took effect")
})

t.test('JWT_JWKS_COOLDOWN_MS: default 30000, bounded', async (t) => {
  const env = { AUTH_MODE: 'jwt', JWT_JWKS_URL: 'https://idp.example/jwks' }
  t.match(loadConfig(env).auth, { mode: 'jwt', key: { kind: 'jwks', cooldownMs: 30_000 } })
  t.match(loadConfig({ ...env, JWT_JWKS_COOLDOWN_MS: '5000' }).auth, { key: { cooldownMs: 5000 } })
  for (const bad of ['999', '600001', '0', '-1', '1.5', 'soon']) {
    t.throws(() => loadConfig({ ...env, JWT_JWKS_COOLDOWN_MS: bad }), { name: 'ConfigError', message: /JWT_JWKS_COOLDOWN_MS/ }, bad)
  }
})
