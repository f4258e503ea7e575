// Configuration: defaults, validation naming the variable, frozen result.
import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

const base = { REDIS_URL: 'redis://127.0.0.1:6379', AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:9000/me' }
const SECRET = 's'.repeat(32)

function fails(t: Test, env: Record<string, string>, mentions: RegExp, what: string) {
  t.throws(() => loadConfig(env), { name: 'ConfigError', message: mentions }, what)
}

t.test('defaults', async (t) => {
  const c = loadConfig(base)
  t.match(c, {
    host: '0.0.0.0',
    port: 8080,
    channel: 'notifications',
    cookieName: 'access_token',
    allowQueryToken: false,
    corsOrigins: [],
    heartbeatIntervalMs: 15000,
    retryMs: 3000,
    maxBufferBytes: 1048576,
    shutdownTimeoutMs: 10000,
    logLevel: 'info',
    auth: { mode: 'upstream', userField: 'user_id', timeoutMs: 2000, cacheTtlMs: 30000 },
    limits: { maxConnections: 10000, maxConnectionsPerUser: 20, connectRatePerMin: 300 },
    trustProxy: false,
    requestTimeoutMs: 10000,
    listenBacklog: 4096,
    metricsToken: undefined,
  })
})

t.test('limits: on by default, bounded, the rate limit alone may be 0', async (t) => {
  t.match(loadConfig({ ...base, CONNECT_RATE_PER_MIN: '0' }).limits, { connectRatePerMin: 0 })
  fails(t, { ...base, MAX_CONNECTIONS: '0' }, /MAX_CONNECTIONS/, 'MAX_CONNECTIONS=0')
  fails(t, { ...base, MAX_CONNECTIONS_PER_USER: '0' }, /MAX_CONNECTIONS_PER_USER/, 'MAX_CONNECTIONS_PER_USER=0')
  fails(t, { ...base, CONNECT_RATE_PER_MIN: '-1' }, /CONNECT_RATE_PER_MIN/, 'negative rate')
  fails(t, { ...base, REQUEST_TIMEOUT_MS: '10' }, /REQUEST_TIMEOUT_MS/, 'REQUEST_TIMEOUT_MS below 100')
  fails(t, { ...base, METRICS_TOKEN: 'short' }, /METRICS_TOKEN/, 'short metrics token')
  fails(t, { ...base, LISTEN_BACKLOG: '0' }, /LISTEN_BACKLOG/, 'LISTEN_BACKLOG=0')
})

t.test('introspection mode names each missing setting', async (t) => {
  const intro = { ...base, AUTH_MODE: 'introspection', INTROSPECTION_URL: 'https://idp.example/introspect' }
  fails(t, intro, /INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET/, 'no client credentials')
  fails(t, { ...base, AUTH_MODE: 'introspection' }, /INTROSPECTION_URL/, 'no URL')
  fails(t, { ...intro, INTROSPECTION_URL: 'ftp://x' }, /INTROSPECTION_URL/, 'not http(s)')
  const c = loadConfig({ ...intro, INTROSPECTION_CLIENT_ID: 'notify', INTROSPECTION_CLIENT_SECRET: 'secret', AUTH_CACHE_TTL_MS: '5000' })
  t.same(c.auth, {
    mode: 'introspection',
    url: 'https://idp.example/introspect',
    clientId: 'notify',
    clientSecret: 'secret',
    userClaim: 'sub',
    untypedTokens: 'refuse',
    timeoutMs: 2000,
    cacheTtlMs: 5000,
  })
  const full = { ...intro, INTROSPECTION_CLIENT_ID: 'notify', INTROSPECTION_CLIENT_SECRET: 'secret' }
  t.match(loadConfig({ ...full, INTROSPECTION_UNTYPED_TOKENS: 'accept' }).auth, { untypedTokens: 'accept' })
  fails(t, { ...full, INTROSPECTION_UNTYPED_TOKENS: 'yes' }, /INTROSPECTION_UNTYPED_TOKENS/, 'neither refuse nor accept')
})

t.test('the result is deeply frozen', async (t) => {
  const c = loadConfig({ ...base, CORS_ORIGINS: 'https://a.example' })
  t.ok(Object.isFrozen(c))
  t.ok(Object.isFrozen(c.auth))
  t.ok(Object.isFrozen(c.corsOrigins))
  t.throws(() => {
    ;(c as { port: number }).port = 1
  })
})

t.test('values are parsed from strings; empty means unset', async (t) => {
  const c = loadConfig({ ...base, PORT: '9000', AUTH_ALLOW_QUERY_TOKEN: 'true', HEARTBEAT_INTERVAL_MS: '', LOG_LEVEL: 'warn' })
  t.equal(c.port, 9000)
  t.equal(c.allowQueryToken, true)
  t.equal(c.heartbeatIntervalMs, 15000)
  t.equal(c.logLevel, 'warn')
})

t.test('a missing or bad value names the variable', async (t) => {
  fails(t, { ...base, REDIS_URL: 'localhost:6379' }, /REDIS_URL/, 'REDIS_URL without scheme')
  fails(t, { REDIS_URL: base.REDIS_URL }, /AUTH_MODE/, 'missing AUTH_MODE')
  fails(t, { ...base, AUTH_MODE: 'magic' }, /AUTH_MODE/, 'unknown AUTH_MODE')
  fails(t, { ...base, PORT: 'eighty' }, /PORT/, 'non-numeric PORT')
  fails(t, { ...base, PORT: '70000' }, /PORT/, 'PORT out of range')
  fails(t, { ...base, HEARTBEAT_INTERVAL_MS: '-5' }, /HEARTBEAT_INTERVAL_MS/, 'negative interval')
  fails(t, { ...base, SSE_MAX_BUFFER_BYTES: '10' }, /SSE_MAX_BUFFER_BYTES/, 'tiny buffer')
  fails(t, { ...base, AUTH_ALLOW_QUERY_TOKEN: 'maybe' }, /AUTH_ALLOW_QUERY_TOKEN/, 'non-boolean')
  fails(t, { ...base, LOG_LEVEL: 'loud' }, /LOG_LEVEL/, 'unknown level')
  fails(t, { ...base, AUTH_UPSTREAM_URL: '' }, /AUTH_UPSTREAM_URL/, 'upstream mode without URL')
  fails(t, { ...base, AUTH_UPSTREAM_URL: 'ftp://x' }, /AUTH_UPSTREAM_URL/, 'non-http URL')
  fails(t, { ...base, MAX_EVENT_BYTES: '900000' }, /MAX_EVENT_BYTES/, 'event limit above half the stream buffer')
  fails(t, { ...base, AUTH_COOKIE_NAME: 'a b' }, /AUTH_COOKIE_NAME/, 'cookie name with a space')
})

t.test('CORS_ORIGINS: explicit origins only', async (t) => {
  t.same(loadConfig({ ...base, CORS_ORIGINS: 'https://a.example, http://b.example:8080' }).corsOrigins, [
    'https://a.example',
    'http://b.example:8080',
  ])
  fails(t, { ...base, CORS_ORIGINS: '*' }, /CORS_ORIGINS.*\*/, 'wildcard')
  fails(t, { ...base, CORS_ORIGINS: 'https://a.example/' }, /CORS_ORIGINS/, 'trailing slash')
  fails(t, { ...base, CORS_ORIGINS: 'https://a.example/app' }, /CORS_ORIGINS/, 'path')
  fails(t, { ...base, CORS_ORIGINS: 'a.example' }, /CORS_ORIGINS/, 'no scheme')
})

t.test('jwt mode: exactly one key source, algorithms pinned by key type', async (t) => {
  const jwt = { REDIS_URL: base.REDIS_URL, AUTH_MODE: 'jwt' }
  fails(t, jwt, /JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL.*none/, 'no key source')
  fails(t, { ...jwt, JWT_SECRET: SECRET, JWT_JWKS_URL: 'https://idp/jwks' }, /exactly one.*JWT_SECRET, JWT_JWKS_URL/, 'two sources')
  fails(t, { ...jwt, JWT_SECRET: 'short' }, /JWT_SECRET/, 'short secret')

  const hs = loadConfig({ ...jwt, JWT_SECRET: SECRET })
  t.match(hs.auth, { mode: 'jwt', algorithms: ['HS256'], userClaim: 'sub' })

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.match(loadConfig({ ...jwt, JWT_PUBLIC_KEY: rsa }).auth, {
    mode: 'jwt',
    key: { kind: 'public-key', pem: rsa.trim() },
    algorithms: ['RS256'],
    userClaim: 'sub',
  })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.match(loadConfig({ ...jwt, JWT_PUBLIC_KEY: ec }).auth, { algorithms: ['ES384'] })
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.match(loadConfig({ ...jwt, JWT_PUBLIC_KEY: ed }).auth, { algorithms: ['EdDSA'] })
  // PEM in one env line with literal \n, as .env files and compose often carry it.
  t.match(loadConfig({ ...jwt, JWT_PUBLIC_KEY: rsa.replace(/\n/g, '\\n') }).auth, { algorithms: ['RS256'] })
  fails(t, { ...jwt, JWT_PUBLIC_KEY: 'not a key' }, /JWT_PUBLIC_KEY/, 'garbage PEM')

  t.match(loadConfig({ ...jwt, JWT_JWKS_URL: 'https://idp.example/jwks', JWT_ALGORITHMS: 'ES256, RS256' }).auth, {
    algorithms: ['ES256', 'RS256'],
  })
  fails(t, { ...jwt, JWT_SECRET: SECRET, JWT_ALGORITHMS: 'none' }, /JWT_ALGORITHMS.*none/, 'none')
  fails(t, { ...jwt, JWT_SECRET: SECRET, JWT_ALGORITHMS: 'RS256' }, /JWT_ALGORITHMS.*RS256/, 'asymmetric alg with a secret')
  fails(t, { ...jwt, JWT_PUBLIC_KEY: rsa, JWT_ALGORITHMS: 'HS256' }, /JWT_ALGORITHMS.*HS256/, 'HMAC alg with a public key')
  fails(t, { ...jwt, JWT_SECRET: SECRET, JWT_ALGORITHMS: ' , ' }, /JWT_ALGORITHMS/, 'empty list')
  t.match(loadConfig({ ...jwt, JWT_SECRET: SECRET, JWT_ISSUER: 'https://idp', JWT_AUDIENCE: 'notify', JWT_USER_CLAIM: 'uid' }).auth, {
    issuer: 'https://idp',
    audience: 'notify',
    userClaim: 'uid',
  })
})

t.test('ConfigError is what start-up reports', async (t) => {
  try {
    loadConfig({})
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof ConfigError)
  }
})
