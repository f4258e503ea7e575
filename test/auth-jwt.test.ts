// JWT mode: tokens verified locally with an HMAC secret, a PEM public key or a
// remote JWKS served by a real HTTP server; expiry ends the stream in-band.
import { createHmac } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose'
import t from 'tap'
import type { AppDeps } from '../src/app.js'
import { ConfigError, loadConfig } from '../src/config.js'
import { build, type Built } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { freePort } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const SECRET = 'test-secret-that-is-long-enough-for-hs256!'
const secretKey = new TextEncoder().encode(SECRET)

async function hs256(payload: JWTPayload, key: Uint8Array = secretKey): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(key)
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Signs arbitrary bytes as an HS256 JWS by hand, so the payload need not be a claims object. */
function hs256Raw(payload: string): string {
  const input = `${b64url({ alg: 'HS256' })}.${Buffer.from(payload).toString('base64url')}`
  return `${input}.${createHmac('sha256', secretKey).update(input).digest('base64url')}`
}

function jwtBuild(t: Teardown, env: Record<string, string>, deps: AppDeps = {}): Promise<Built> {
  return build(t, { env: { AUTH_MODE: 'jwt', ...env }, deps })
}

// Tests wait on stream events; a regression that leaves one waiting is reported against that test.
// Generous: a test also starts redis-server, an upstream or a provider and builds the app,
// and tears them down: on a loaded machine (load ~20 on 2 cores) one took over 15 s.
const WAIT = { timeout: 60_000 }

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** Proves a stream belongs to `userId`: an event for that user arrives on it. */
async function deliversTo(s: Built, stream: TestStream, userId: string): Promise<string | undefined> {
  await s.publish({ recipient_id: userId, type: 'probe' })
  const [e] = await stream.nextEvents(1)
  return e?.event
}

function errorCode(stream: TestStream): string {
  return (JSON.parse(stream.body) as { code: string }).code
}

/** A real JWKS endpoint whose key set the test can change while it runs. */
async function startJwks(t: Teardown, keys: JWK[]) {
  let current = keys
  let answer: { status: number; body?: string; delayMs?: number } | undefined
  let requests = 0
  const server = createServer((_req, res) => {
    requests++
    const reply = () => {
      res.writeHead(answer?.status ?? 200, { 'content-type': 'application/json' })
      res.end(answer?.body ?? JSON.stringify({ keys: current }))
    }
    if (answer?.delayMs === undefined) return reply()
    const timer = setTimeout(reply, answer.delayMs)
    res.on('close', () => clearTimeout(timer))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    server.closeAllConnections()
    server.close()
  })
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`,
    setKeys: (k: JWK[]) => {
      current = k
    },
    /** Answer with this status and body instead of the key set; undefined restores it. */
    breakWith: (a: { status: number; body?: string; delayMs?: number } | undefined) => {
      answer = a
    },
    requests: () => requests,
  }
}

async function rsaKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
  const sign = (payload: JWTPayload) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid }).sign(privateKey)
  return { publicKey, privateKey, jwk, sign, pem: await exportSPKI(publicKey) }
}

t.test('HS256: a valid token opens a stream, via header and via cookie', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET })
  const token = await hs256({ sub: 'alice' })
  const viaHeader = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(viaHeader.status, 200)
  t.match(viaHeader.headers['content-type'], /^text\/event-stream/)
  t.equal(await deliversTo(s, viaHeader, 'alice'), 'probe')

  const viaCookie = await openStream(t, `${s.base}/notify`, { cookie: `access_token=${await hs256({ sub: 'bob' })}` })
  t.equal(viaCookie.status, 200)
  t.equal(await deliversTo(s, viaCookie, 'bob'), 'probe')
  t.equal(s.upstream.totalCalls(), 0, 'jwt mode never asks the upstream')
})

t.test('refused tokens are 401 invalid_token, never 503', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET })
  const now = Math.floor(Date.now() / 1000)
  const cases: Record<string, string> = {
    expired: await hs256({ sub: 'alice', exp: now - 10 }),
    'not yet valid': await hs256({ sub: 'alice', nbf: now + 3600 }),
    'wrong key': await hs256({ sub: 'alice' }, new TextEncoder().encode(`${SECRET}-but-another-one`)),
    'tampered payload': (await hs256({ sub: 'alice' })).replace(/\.[^.]+\./, `.${b64url({ sub: 'mallory' })}.`),
    'alg none': `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'alice' })}.`,
    'alg NONE': `${b64url({ alg: 'NONE' })}.${b64url({ sub: 'alice' })}.`,
    'alg none, signature kept': `${b64url({ alg: 'none' })}.${b64url({ sub: 'alice' })}.${(await hs256({ sub: 'alice' })).split('.')[2]}`,
    'not a JWT': 'definitely-not-a-jwt',
    'claims not JSON (signed)': hs256Raw('nope'),
    'claims an array (signed)': hs256Raw('[{"sub":"alice"}]'),
    'no sub claim': await hs256({ name: 'alice' }),
    'empty sub': await hs256({ sub: '' }),
    'object sub': await hs256({ sub: { id: 1 } } as unknown as JWTPayload),
  }
  const control = await openStream(t, `${s.base}/notify`, bearer(hs256Raw('{"sub":"raw"}')))
  t.equal(control.status, 200, 'a hand-signed token with a claims object is accepted')
  control.close()
  await hubSize(s.app.notifier.hub, 0)
  for (const [name, token] of Object.entries(cases)) {
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 401, name)
    t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED', name)
    t.match(stream.headers['www-authenticate'], /^Bearer /, name)
    t.equal(stream.headers['retry-after'], undefined, name)
  }
  t.equal(s.app.notifier.hub.size, 0)
})

t.test('expired token: the body says rejected', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET })
  const stream = await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 'a', exp: Math.floor(Date.now() / 1000) - 1 })))
  t.equal(stream.status, 401)
  t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED')
  t.match(stream.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('JWT_ISSUER and JWT_AUDIENCE are checked when set', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET, JWT_ISSUER: 'https://id.example.com', JWT_AUDIENCE: 'notify' })
  const good = await hs256({ sub: 'alice', iss: 'https://id.example.com', aud: ['other', 'notify'] })
  t.equal((await openStream(t, `${s.base}/notify`, bearer(good))).status, 200, 'right issuer and audience')
  const bad: Record<string, JWTPayload> = {
    'wrong issuer': { sub: 'alice', iss: 'https://evil.example.com', aud: 'notify' },
    'wrong audience': { sub: 'alice', iss: 'https://id.example.com', aud: 'other' },
    'no issuer': { sub: 'alice', aud: 'notify' },
    'no audience': { sub: 'alice', iss: 'https://id.example.com' },
  }
  for (const [name, payload] of Object.entries(bad)) {
    const stream = await openStream(t, `${s.base}/notify`, bearer(await hs256(payload)))
    t.equal(stream.status, 401, name)
    t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED', name)
  }
})

t.test('a numeric sub is a user id, compared as a string', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET })
  const token = await hs256({ sub: 42 } as unknown as JWTPayload)
  const stream = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, '42'), 'probe')
  const fractional = await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 4.2 } as unknown as JWTPayload)))
  t.equal(fractional.status, 401, 'a non-integer number is not a user id')
})

t.test('JWT_USER_CLAIM names the claim holding the user id', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET, JWT_USER_CLAIM: 'uid' })
  const stream = await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 'not-this', uid: 'u-9' })))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'u-9'), 'probe')
  const onlySub = await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 'alice' })))
  t.equal(onlySub.status, 401, 'sub is not used when another claim is configured')
})

t.test('PEM public key: RS256 accepted; an HS256 token signed with the PEM text is refused', WAIT, async (t) => {
  const key = await rsaKey('k1')
  const s = await jwtBuild(t, { JWT_PUBLIC_KEY: key.pem })
  const valid = await openStream(t, `${s.base}/notify`, bearer(await key.sign({ sub: 'alice' })))
  t.equal(valid.status, 200, 'the key is configured correctly')

  // Algorithm confusion: a verifier that took `alg` from the token would check
  // this HMAC with the (public) PEM bytes as the secret, and accept it.
  for (const pemText of [key.pem, key.pem.trim(), `${key.pem.trim()}\n`]) {
    const forged = await new SignJWT({ sub: 'mallory' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(pemText))
    const stream = await openStream(t, `${s.base}/notify`, bearer(forged))
    t.equal(stream.status, 401)
    t.equal(errorCode(stream), 'NOTIFY_TOKEN_REJECTED')
  }
  const other = await rsaKey('k2')
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await other.sign({ sub: 'alice' })))).status, 401, 'another RSA key')
})

t.test('JWKS: a valid RS256 token is accepted, an HS256 one is not', WAIT, async (t) => {
  const key = await rsaKey('k1')
  const jwks = await startJwks(t, [key.jwk])
  const s = await jwtBuild(t, { JWT_JWKS_URL: jwks.url })
  const stream = await openStream(t, `${s.base}/notify`, bearer(await key.sign({ sub: 'alice' })))
  t.equal(stream.status, 200)
  t.equal(await deliversTo(s, stream, 'alice'), 'probe')
  t.equal(jwks.requests(), 1)

  const second = await openStream(t, `${s.base}/notify`, bearer(await key.sign({ sub: 'bob' })))
  t.equal(second.status, 200)
  t.equal(jwks.requests(), 1, 'the key set is cached')

  const hmac = await hs256({ sub: 'mallory' })
  t.equal((await openStream(t, `${s.base}/notify`, bearer(hmac))).status, 401)
  const stranger = await rsaKey('k1') // same kid, different key
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await stranger.sign({ sub: 'mallory' })))).status, 401)
})

t.test('JWKS key rotation: a token signed by a newly published key is accepted without a restart', WAIT, async (t) => {
  const oldKey = await rsaKey('2024-old')
  const newKey = await rsaKey('2025-new')
  const jwks = await startJwks(t, [oldKey.jwk])
  // No refetch cooldown, so the rotation is seen at once (production waits up to 30 s).
  const s = await jwtBuild(t, { JWT_JWKS_URL: jwks.url }, { jwks: { cooldownMs: 0 } })
  t.equal((await openStream(t, `${s.base}/notify`, bearer(await oldKey.sign({ sub: 'alice' })))).status, 200)
  t.equal(jwks.requests(), 1)

  jwks.setKeys([newKey.jwk])
  const rotated = await openStream(t, `${s.base}/notify`, bearer(await newKey.sign({ sub: 'bob' })))
  t.equal(rotated.status, 200, 'the new key is fetched and used')
  t.equal(jwks.requests(), 2)
  t.equal(await deliversTo(s, rotated, 'bob'), 'probe')

  const retired = await openStream(t, `${s.base}/notify`, bearer(await oldKey.sign({ sub: 'alice' })))
  t.equal(retired.status, 401, 'a key no longer published is refused')
})

t.test('JWKS unreachable or broken: 503 with Retry-After, and recovery', WAIT, async (t) => {
  const key = await rsaKey('k1')
  const token = await key.sign({ sub: 'alice' })

  t.test('closed port', WAIT, async (t) => {
    const s = await jwtBuild(t, { JWT_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json` })
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 503)
    t.match(stream.headers['retry-after'], /^\d+$/)
    t.equal(stream.headers['www-authenticate'], undefined)
    t.equal(errorCode(stream), 'NOTIFY_AUTH_UNAVAILABLE')
  })

  t.test('too slow', WAIT, async (t) => {
    const jwks = await startJwks(t, [key.jwk])
    jwks.breakWith({ status: 200, delayMs: 2000 })
    const s = await jwtBuild(t, { JWT_JWKS_URL: jwks.url }, { jwks: { timeoutMs: 100 } })
    const stream = await openStream(t, `${s.base}/notify`, bearer(token))
    t.equal(stream.status, 503)
    t.equal(errorCode(stream), 'NOTIFY_AUTH_UNAVAILABLE')
  })

  for (const broken of [{ status: 500 }, { status: 200, body: '<html>oops</html>' }, { status: 200, body: '{"keys": 5}' }]) {
    t.test(`answering ${broken.status} ${broken.body ?? ''}`, async (t) => {
      const jwks = await startJwks(t, [key.jwk])
      jwks.breakWith(broken)
      const s = await jwtBuild(t, { JWT_JWKS_URL: jwks.url })
      const stream = await openStream(t, `${s.base}/notify`, bearer(token))
      t.equal(stream.status, 503)
      t.match(stream.headers['retry-after'], /^\d+$/)

      jwks.breakWith(undefined)
      const again = await openStream(t, `${s.base}/notify`, bearer(token))
      t.equal(again.status, 200, 'a failed fetch is not cached: the next connect works')
    })
  }
})

t.test('a stream is ended at the token exp, after an auth-expired event', WAIT, async (t) => {
  // The token is checked on connect by jose (the real clock); the stream is
  // ended at its exp by the hub's clock (AppDeps.now). A token that really
  // expires 1.5 to 2.5 s after it is signed races the test: under CPU load the
  // connect may come after exp (a 401), or the stream may end before the probe
  // reaches it. So the token is valid for 10 minutes, and the hub's clock stands
  // still 250 ms short of its exp until the test lets it run: meanwhile the hub
  // rechecks the deadline every 250 ms, and ends the stream at the first check
  // after exp.
  const exp = Math.floor(Date.now() / 1000) + 600
  let now = (): number => exp * 1000 - 250
  const s = await jwtBuild(t, { JWT_SECRET: SECRET }, { now: () => now() })
  const hub = s.app.notifier.hub
  const token = await hs256({ sub: 'alice', exp })
  const stream = await openStream(t, `${s.base}/notify`, bearer(token))
  t.equal(stream.status, 200)
  t.equal(hub.pendingExpiries, 1)
  t.equal(await deliversTo(s, stream, 'alice'), 'probe', 'events flow before expiry')
  // Node runs due timers in deadline order: once this sleep, begun after the
  // hub armed its recheck (at most 250 ms away), is over, the hub has looked at
  // its clock at least once while it was short of exp.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(hub.stats.closed.expired, 0, 'not ended before exp')
  t.equal(hub.countOf('alice'), 1)

  // The clock reaches exp and runs on.
  const closed = once(hub, 'close') as Promise<[unknown, string]>
  const from = Date.now()
  now = () => exp * 1000 + (Date.now() - from)
  t.equal((await closed)[1], 'expired', 'ended at exp')
  await stream.ended
  t.same(stream.events.map((e) => e.event), ['probe', 'auth-expired'], 'auth-expired is the last event')
  t.equal(stream.events.at(-1)?.data, '{}')
  await hubSize(hub, 0)
  t.equal(hub.users, 0)
  t.equal(hub.pendingExpiries, 0)
  t.equal(hub.stats.closed.expired, 1)
  // That the same token is then refused on reconnect is jose's check against
  // the real clock, which this token passes for 10 minutes: 'expired token:
  // the body says rejected' and 'refused tokens…' cover a token past its exp.
})

t.test('a token without exp is not scheduled for expiry; closing removes a scheduled one', WAIT, async (t) => {
  const s = await jwtBuild(t, { JWT_SECRET: SECRET })
  const hub = s.app.notifier.hub
  await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 'a' })))
  t.equal(hub.pendingExpiries, 0)
  const expiring = await openStream(t, `${s.base}/notify`, bearer(await hs256({ sub: 'b', exp: Math.floor(Date.now() / 1000) + 3600 })))
  t.equal(hub.pendingExpiries, 1)
  expiring.close()
  await hubSize(hub, 1)
  t.equal(hub.pendingExpiries, 0)
})

t.test('config: JWT_ALGORITHMS cannot be none nor mix HMAC with a public key', WAIT, async (t) => {
  const key = await rsaKey('k1')
  const base = { REDIS_URL: 'redis://127.0.0.1:6379', AUTH_MODE: 'jwt' }
  const refused: Record<string, Record<string, string>> = {
    'none with a secret': { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'none' },
    'None with a secret': { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS256,None' },
    'none with a public key': { JWT_PUBLIC_KEY: key.pem, JWT_ALGORITHMS: 'none' },
    'none with a JWKS': { JWT_JWKS_URL: 'https://id.example.com/jwks.json', JWT_ALGORITHMS: 'RS256,none' },
    'HS256 with an RSA key': { JWT_PUBLIC_KEY: key.pem, JWT_ALGORITHMS: 'RS256,HS256' },
    'HS256 with a JWKS': { JWT_JWKS_URL: 'https://id.example.com/jwks.json', JWT_ALGORITHMS: 'HS256' },
    'RS256 with a secret': { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'RS256' },
    'empty list': { JWT_SECRET: SECRET, JWT_ALGORITHMS: ' , ' },
  }
  for (const [name, env] of Object.entries(refused)) {
    t.throws(() => loadConfig({ ...base, ...env }), { name: 'ConfigError', message: /JWT_ALGORITHMS/ }, name)
    t.throws(() => loadConfig({ ...base, ...env }), ConfigError, name)
  }
  const ok = loadConfig({ ...base, JWT_PUBLIC_KEY: key.pem, JWT_ALGORITHMS: 'RS256, PS256' })
  t.match(ok.auth, { mode: 'jwt', algorithms: ['RS256', 'PS256'] }, 'a consistent list is accepted')
  t.match(loadConfig({ ...base, JWT_PUBLIC_KEY: key.pem }).auth, { algorithms: ['RS256'] }, 'RSA key default')
  t.match(loadConfig({ ...base, JWT_SECRET: SECRET }).auth, { algorithms: ['HS256'] }, 'secret default')
})
