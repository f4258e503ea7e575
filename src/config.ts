// The only reader of process.env. Every setting is declared once, with its
// default and meaning, in the schema below; the TypeScript type is derived from
// that schema so the two cannot drift. A bad value stops start-up with a
// message naming the variable.
import { createPublicKey } from 'node:crypto'
import { isIP } from 'node:net'
import { Type, type Static } from '@sinclair/typebox'
import { envSchema } from 'env-schema'
import { ConfigError } from './config-error.js'
import { type RedisConfig, RedisEnv, redisConfig } from './redis-config.js'

export { ConfigError } from './config-error.js'

const Millis = (def: number, min = 0) => Type.Integer({ default: def, minimum: min, maximum: 2_147_483_647 })
const Optional = () => Type.Optional(Type.String({ minLength: 1 }))

export const EnvSchema = Type.Object({
  /** Listen address. Default 0.0.0.0 (all interfaces). */
  HOST: Type.String({ default: '0.0.0.0', minLength: 1 }),
  /** Listen port. Default 8080. */
  PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  /** Redis deployment, credentials, call bounds, publish guarantees: see redis-config.ts. */
  ...RedisEnv,
  /**
   * Pub/sub channel carrying events, and the prefix of every Redis key and
   * per-user channel. No braces (they would move keys between Redis Cluster
   * slots) and no spaces. Default `notifications`.
   */
  NOTIFY_CHANNEL: Type.String({ default: 'notifications', pattern: '^[^{}\\s]{1,256}$' }),
  /** Largest event accepted from the channel, in bytes; larger ones are dropped. Default 262144. */
  MAX_EVENT_BYTES: Type.Integer({ default: 262_144, minimum: 256 }),
  /** Events kept per recipient for replay; 0 disables history (and event ids). Default 100. */
  HISTORY_SIZE: Type.Integer({ default: 100, minimum: 0, maximum: 10_000 }),
  /** Seconds a recipient's history lives after its last write. Default 86400. */
  HISTORY_TTL_S: Type.Integer({ default: 86_400, minimum: 1, maximum: 2_147_483 }),
  /** Embedded broker: bound on the memory all history may hold, in bytes; least recently written recipients go first. Default 67108864. */
  HISTORY_MAX_BYTES: Type.Integer({ default: 67_108_864, minimum: 1_048_576 }),

  /** Enables POST /publish; callers send `Authorization: Bearer <PUBLISH_TOKEN>`. At least 16 characters. Unset: /publish is 404. */
  PUBLISH_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  /** Most events in one POST /publish batch. Default 1000. */
  PUBLISH_MAX_EVENTS: Type.Integer({ default: 1000, minimum: 1, maximum: 10_000 }),
  /** Largest POST /publish body, in bytes (413 beyond). Default 1048576. */
  PUBLISH_MAX_BYTES: Type.Integer({ default: 1_048_576, minimum: 1024, maximum: 67_108_864 }),
  /**
   * Seconds an Idempotency-Key of POST /publish (or of the publisher) is
   * remembered, per recipient: a retry with the same key within it stores and
   * publishes nothing new and answers the first ids. Default 600.
   */
  IDEMPOTENCY_TTL_S: Type.Integer({ default: 600, minimum: 1, maximum: 604_800 }),
  /** Most users in one presence question (POST /presence); 413 beyond. Default 1000. */
  PRESENCE_MAX_USERS: Type.Integer({ default: 1000, minimum: 1, maximum: 10_000 }),

  /** `upstream` (ask an HTTP auth server), `jwt` (verify locally) or `introspection` (RFC 7662). Required. */
  AUTH_MODE: Type.Union([Type.Literal('upstream'), Type.Literal('jwt'), Type.Literal('introspection')]),
  /** upstream mode: URL called with GET and the client's `Authorization: Bearer <token>`. */
  AUTH_UPSTREAM_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** upstream mode: field of the JSON answer holding the user id. Default `user_id`. */
  AUTH_UPSTREAM_USER_FIELD: Type.String({ default: 'user_id', minLength: 1 }),
  /** upstream and introspection modes: timeout of one check, its wait for a free call slot included (auth/slots.ts). Default 2000 ms. */
  AUTH_UPSTREAM_TIMEOUT_MS: Millis(2000, 1),
  /** upstream and introspection modes: how long a positive answer is cached (keyed by token hash; never past the token's `exp`). 0 disables. Default 30000 ms. */
  AUTH_CACHE_TTL_MS: Millis(30_000),
  /** introspection mode: the provider's RFC 7662 endpoint, called with POST `token=<token>`. */
  INTROSPECTION_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** introspection mode: this service's client id at the provider (HTTP Basic). */
  INTROSPECTION_CLIENT_ID: Optional(),
  /** introspection mode: this service's client secret at the provider (HTTP Basic). */
  INTROSPECTION_CLIENT_SECRET: Optional(),
  /** introspection mode: member of the introspection answer holding the user id. Default `sub`. */
  INTROSPECTION_USER_CLAIM: Type.String({ default: 'sub', minLength: 1 }),
  /** introspection mode: required value in the answer's `aud`, checked when set (RFC 7662 section 4). */
  INTROSPECTION_AUDIENCE: Optional(),
  /**
   * introspection mode: what an active answer that names no token kind (no
   * `token_type`, `typ` or `token_use`; RFC 7662 makes them optional) does.
   * `refuse` (default): oidc-provider and Spring Authorization Server describe
   * refresh tokens that way. `accept`: for a provider that names no kind at all
   * and introspects access tokens only. An answer naming another kind
   * (refresh, ID, offline) is refused either way.
   */
  INTROSPECTION_UNTYPED_TOKENS: Type.Union([Type.Literal('refuse'), Type.Literal('accept')], { default: 'refuse' }),
  /** jwt mode: HMAC secret (at least 32 characters). */
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  /** jwt mode: PEM (SPKI) public key. */
  JWT_PUBLIC_KEY: Optional(),
  /** jwt mode: URL of a JWKS document; refetched when a token names an unknown key id. */
  JWT_JWKS_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  /**
   * jwt mode with JWT_JWKS_URL: least time between two JWKS fetches caused by
   * tokens naming an unknown key id; within it such tokens are refused (401)
   * without a fetch. Bounds what tokens with made-up `kid`s can make the service
   * ask of the identity provider: one fetch per cooldown per instance. Also the
   * longest a key newly published by the provider may be refused. Default
   * 30000 ms (jose's). At least 1000; at most 600000, jose's cache age: an older
   * key set is fetched again before the next token anyway.
   */
  JWT_JWKS_COOLDOWN_MS: Type.Integer({ default: 30_000, minimum: 1000, maximum: 600_000 }),
  /** jwt mode: comma list of accepted algorithms. Default by key type. Never taken from the token. */
  JWT_ALGORITHMS: Optional(),
  /** jwt mode: required `iss`, checked when set. */
  JWT_ISSUER: Optional(),
  /** jwt mode: required `aud`, checked when set. */
  JWT_AUDIENCE: Optional(),
  /** jwt mode: claim holding the user id. Default `sub`. */
  JWT_USER_CLAIM: Type.String({ default: 'sub', minLength: 1 }),
  /** Cookie read when there is no Authorization header. Default `access_token`. */
  AUTH_COOKIE_NAME: Type.String({ default: 'access_token', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" }),
  /** Accept `?access_token=` on /notify (never logged). Default false. */
  AUTH_ALLOW_QUERY_TOKEN: Type.Boolean({ default: false }),

  /** Streams open at once in this process, all users; 503 with Retry-After beyond. Default 10000. */
  MAX_CONNECTIONS: Type.Integer({ default: 10_000, minimum: 1, maximum: 1_000_000 }),
  /** Streams open at once for one user in this process; 429 beyond. Default 20. */
  MAX_CONNECTIONS_PER_USER: Type.Integer({ default: 20, minimum: 1, maximum: 100_000 }),
  /**
   * /notify requests per minute from one client IP; 429 with Retry-After beyond;
   * 0 disables. Default 300: one client looping costs at most 5 auth checks a
   * second, while an office behind one NAT address can still reconnect at once
   * after a deploy.
   */
  CONNECT_RATE_PER_MIN: Type.Integer({ default: 300, minimum: 0, maximum: 1_000_000 }),
  /** Believe X-Forwarded-For from: `false` (nobody), `true` (anyone), a hop count, or a comma list of proxy IPs/CIDRs. Default false. */
  TRUST_PROXY: Type.String({ default: 'false', minLength: 1 }),
  /** Time allowed to receive a whole request (headers and body); a silent connection outside /notify streams is closed after it. Default 10000 ms. */
  REQUEST_TIMEOUT_MS: Millis(10_000, 100),
  /**
   * Connections the kernel queues for accept() (listen backlog). Default 4096:
   * Node's 511 overflows when thousands of browsers reconnect at once after a
   * deploy, and each dropped SYN costs its client a 1, 3 or 7 s retransmission.
   * The kernel caps it at net.core.somaxconn.
   */
  LISTEN_BACKLOG: Type.Integer({ default: 4096, minimum: 1, maximum: 65_535 }),
  /** Protects GET /metrics: callers send `Authorization: Bearer <METRICS_TOKEN>`. At least 16 characters. Unset: /metrics is open. */
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16 })),

  /** Comma list of allowed CORS origins (credentials allowed for them). Default empty: no CORS. */
  CORS_ORIGINS: Type.String({ default: '' }),
  /** Interval of the heartbeat comment on every stream. Default 15000 ms. */
  HEARTBEAT_INTERVAL_MS: Millis(15_000, 10),
  /** `retry:` hint sent on connect and on shutdown. Default 3000 ms. */
  SSE_RETRY_MS: Millis(3000),
  /** A stream whose unsent bytes exceed this is closed as a slow consumer. Default 1048576. */
  SSE_MAX_BUFFER_BYTES: Type.Integer({ default: 1_048_576, minimum: 1024 }),
  /** Bound on graceful shutdown. Default 10000 ms. */
  SHUTDOWN_TIMEOUT_MS: Millis(10_000, 1),
  /** pino level. Default `info`. */
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
})

export type Env = Static<typeof EnvSchema>

export type JwtAlgorithm = (typeof HMAC_ALGS)[number] | (typeof ASYMMETRIC_ALGS)[number]
const HMAC_ALGS = ['HS256', 'HS384', 'HS512'] as const
const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

export type JwtKey =
  | { kind: 'secret'; secret: string }
  | { kind: 'public-key'; pem: string }
  | { kind: 'jwks'; url: string; cooldownMs: number }

export type AuthConfig =
  | { mode: 'upstream'; url: string; userField: string; timeoutMs: number; cacheTtlMs: number }
  | {
      mode: 'introspection'
      url: string
      clientId: string
      clientSecret: string
      userClaim: string
      audience?: string
      untypedTokens: 'refuse' | 'accept'
      timeoutMs: number
      cacheTtlMs: number
    }
  | {
      mode: 'jwt'
      key: JwtKey
      algorithms: JwtAlgorithm[]
      issuer?: string
      audience?: string
      userClaim: string
    }

export interface HistoryConfig {
  /** Entries per recipient; 0 = no history. */
  size: number
  ttlS: number
  /** How long a publish's idempotency key is remembered. */
  idempotencyTtlS: number
  /** Embedded broker only. */
  maxBytes: number
}

export interface PublishConfig {
  token: string
  maxEvents: number
  maxBytes: number
  /** Most users in one POST /presence. */
  presenceMaxUsers: number
}

export interface LimitsConfig {
  maxConnections: number
  maxConnectionsPerUser: number
  /** 0: no per-IP connect rate limit. */
  connectRatePerMin: number
}

/** Fastify's `trustProxy`: false, true, a hop count, or proxy addresses/CIDRs. */
export type TrustProxy = boolean | number | string[]

export interface Config {
  host: string
  port: number
  /** Undefined: the embedded broker. */
  redis: RedisConfig | undefined
  channel: string
  maxEventBytes: number
  history: HistoryConfig
  /** Undefined: POST /publish is not served. */
  publish: PublishConfig | undefined
  auth: AuthConfig
  limits: LimitsConfig
  trustProxy: TrustProxy
  requestTimeoutMs: number
  listenBacklog: number
  /** Undefined: GET /metrics is open. */
  metricsToken: string | undefined
  cookieName: string
  allowQueryToken: boolean
  corsOrigins: string[]
  heartbeatIntervalMs: number
  retryMs: number
  maxBufferBytes: number
  shutdownTimeoutMs: number
  logLevel: Env['LOG_LEVEL']
}

/** Reads and validates the environment once; the result is deeply frozen. */
export function loadConfig(source: Record<string, string | undefined> = process.env): Readonly<Config> {
  // Empty strings mean "unset", as in most .env tooling; drop them so defaults apply.
  const data: Record<string, string> = {}
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = source[key]
    if (value !== undefined && value.trim() !== '') data[key] = value.trim()
  }
  let env: Env
  try {
    env = envSchema<Env>({ schema: EnvSchema, data, dotenv: false })
  } catch (err) {
    // ajv reports "env/PORT must be integer" or "env must have required property 'REDIS_URL'".
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`)
  }
  const config: Config = {
    host: env.HOST,
    port: env.PORT,
    redis: redisConfig(env),
    channel: env.NOTIFY_CHANNEL,
    maxEventBytes: env.MAX_EVENT_BYTES,
    history: { size: env.HISTORY_SIZE, ttlS: env.HISTORY_TTL_S, idempotencyTtlS: env.IDEMPOTENCY_TTL_S, maxBytes: env.HISTORY_MAX_BYTES },
    publish:
      env.PUBLISH_TOKEN === undefined
        ? undefined
        : { token: env.PUBLISH_TOKEN, maxEvents: env.PUBLISH_MAX_EVENTS, maxBytes: env.PUBLISH_MAX_BYTES, presenceMaxUsers: env.PRESENCE_MAX_USERS },
    auth: authConfig(env),
    limits: {
      maxConnections: env.MAX_CONNECTIONS,
      maxConnectionsPerUser: env.MAX_CONNECTIONS_PER_USER,
      connectRatePerMin: env.CONNECT_RATE_PER_MIN,
    },
    trustProxy: trustProxy(env.TRUST_PROXY),
    requestTimeoutMs: env.REQUEST_TIMEOUT_MS,
    listenBacklog: env.LISTEN_BACKLOG,
    metricsToken: env.METRICS_TOKEN,
    cookieName: env.AUTH_COOKIE_NAME,
    allowQueryToken: env.AUTH_ALLOW_QUERY_TOKEN,
    corsOrigins: corsOrigins(env.CORS_ORIGINS),
    heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_MS,
    retryMs: env.SSE_RETRY_MS,
    maxBufferBytes: env.SSE_MAX_BUFFER_BYTES,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    logLevel: env.LOG_LEVEL,
  }
  if (config.maxEventBytes > config.maxBufferBytes / 2) {
    throw new ConfigError('MAX_EVENT_BYTES must be at most half of SSE_MAX_BUFFER_BYTES, or one event would close every stream')
  }
  return deepFreeze(config)
}

function authConfig(env: Env): AuthConfig {
  if (env.AUTH_MODE === 'upstream') {
    if (env.AUTH_UPSTREAM_URL === undefined) throw new ConfigError('AUTH_UPSTREAM_URL is required when AUTH_MODE=upstream')
    return {
      mode: 'upstream',
      url: env.AUTH_UPSTREAM_URL,
      userField: env.AUTH_UPSTREAM_USER_FIELD,
      timeoutMs: env.AUTH_UPSTREAM_TIMEOUT_MS,
      cacheTtlMs: env.AUTH_CACHE_TTL_MS,
    }
  }
  if (env.AUTH_MODE === 'introspection') {
    const missing = (['INTROSPECTION_URL', 'INTROSPECTION_CLIENT_ID', 'INTROSPECTION_CLIENT_SECRET'] as const).filter(
      (k) => env[k] === undefined,
    )
    if (missing.length > 0) throw new ConfigError(`AUTH_MODE=introspection needs ${missing.join(', ')}`)
    return {
      mode: 'introspection',
      url: env.INTROSPECTION_URL as string,
      clientId: env.INTROSPECTION_CLIENT_ID as string,
      clientSecret: env.INTROSPECTION_CLIENT_SECRET as string,
      userClaim: env.INTROSPECTION_USER_CLAIM,
      ...(env.INTROSPECTION_AUDIENCE !== undefined && { audience: env.INTROSPECTION_AUDIENCE }),
      untypedTokens: env.INTROSPECTION_UNTYPED_TOKENS,
      timeoutMs: env.AUTH_UPSTREAM_TIMEOUT_MS,
      cacheTtlMs: env.AUTH_CACHE_TTL_MS,
    }
  }
  const sources = (['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_URL'] as const).filter((k) => env[k] !== undefined)
  if (sources.length !== 1) {
    throw new ConfigError(
      `AUTH_MODE=jwt needs exactly one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL (got ${sources.length === 0 ? 'none' : sources.join(', ')})`,
    )
  }
  const key: JwtKey =
    env.JWT_SECRET !== undefined
      ? { kind: 'secret', secret: env.JWT_SECRET }
      : env.JWT_PUBLIC_KEY !== undefined
        ? { kind: 'public-key', pem: env.JWT_PUBLIC_KEY.replace(/\\n/g, '\n') }
        : { kind: 'jwks', url: env.JWT_JWKS_URL as string, cooldownMs: env.JWT_JWKS_COOLDOWN_MS }
  return {
    mode: 'jwt',
    key,
    algorithms: jwtAlgorithms(env.JWT_ALGORITHMS, key),
    ...(env.JWT_ISSUER !== undefined && { issuer: env.JWT_ISSUER }),
    ...(env.JWT_AUDIENCE !== undefined && { audience: env.JWT_AUDIENCE }),
    userClaim: env.JWT_USER_CLAIM,
  }
}

// The allow-list is fixed by configuration, never by the token's header. HMAC and
// asymmetric algorithms are never mixed: that mix is what "algorithm confusion"
// attacks exploit (a public key used as an HMAC secret).
function jwtAlgorithms(list: string | undefined, key: JwtKey): JwtAlgorithm[] {
  const allowed: readonly string[] = key.kind === 'secret' ? HMAC_ALGS : ASYMMETRIC_ALGS
  if (list === undefined) return defaultAlgorithms(key)
  const algs = list.split(',').map((a) => a.trim()).filter((a) => a !== '')
  if (algs.length === 0) throw new ConfigError('JWT_ALGORITHMS is empty')
  for (const alg of algs) {
    if (!allowed.includes(alg)) {
      throw new ConfigError(`JWT_ALGORITHMS: "${alg}" is not allowed with ${key.kind} keys (allowed: ${allowed.join(', ')})`)
    }
  }
  return algs as JwtAlgorithm[]
}

function defaultAlgorithms(key: JwtKey): JwtAlgorithm[] {
  if (key.kind === 'secret') return ['HS256']
  // A JWKS may hold keys of several types; jose only matches a key whose type fits the algorithm.
  if (key.kind === 'jwks') return ['RS256', 'ES256', 'EdDSA']
  let k
  try {
    k = createPublicKey(key.pem)
  } catch {
    throw new ConfigError('JWT_PUBLIC_KEY is not a valid PEM public key')
  }
  switch (k.asymmetricKeyType) {
    case 'rsa':
      return ['RS256']
    case 'rsa-pss':
      return ['PS256']
    case 'ec': {
      const curve = k.asymmetricKeyDetails?.namedCurve
      return curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : ['ES256']
    }
    case 'ed25519':
      return ['EdDSA']
    default:
      throw new ConfigError(`JWT_PUBLIC_KEY: unsupported key type ${String(k.asymmetricKeyType)}`)
  }
}

// `true` believes any X-Forwarded-For, so any client could pick the IP the
// connect rate limit sees; name the proxies instead when they are known.
function trustProxy(value: string): TrustProxy {
  if (value === 'false') return false
  if (value === 'true') return true
  if (/^\d+$/.test(value)) return Number(value)
  const list = value.split(',').map((a) => a.trim()).filter((a) => a !== '')
  for (const entry of list) {
    const [addr = '', bits, extra] = entry.split('/')
    const family = isIP(addr)
    const ok = extra === undefined && family !== 0 && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)))
    if (!ok) throw new ConfigError(`TRUST_PROXY: "${entry}" is not true, false, a hop count or an IP address/CIDR`)
  }
  return list
}

function corsOrigins(list: string): string[] {
  const origins = list.split(',').map((o) => o.trim()).filter((o) => o !== '')
  for (const origin of origins) {
    // A wildcard with credentials would let any site read users' notifications.
    if (origin === '*') throw new ConfigError('CORS_ORIGINS must list origins; "*" is refused because credentials are allowed')
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not an origin like https://app.example.com`)
    }
    if (url.origin !== origin) {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not an origin (scheme://host[:port], no path or trailing slash)`)
    }
  }
  return origins
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
