// The Redis part of the configuration: exactly one deployment, its credentials
// kept where they belong, bounds that fit together, refusals that name the variables.
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'

const auth = { AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:9000/me' }

function fails(t: Test, env: Record<string, string>, mentions: RegExp, what: string) {
  t.throws(() => loadConfig({ ...auth, ...env }), { name: 'ConfigError', message: mentions }, what)
}

t.test('one server: REDIS_URL, with the defaults of every bound', async (t) => {
  const c = loadConfig({ ...auth, REDIS_URL: 'redis://127.0.0.1:6379' })
  t.same(c.redis, {
    topology: { kind: 'single', url: 'redis://127.0.0.1:6379' },
    tls: false,
    commandTimeoutMs: 2000,
    waitReplicas: 0,
    waitTimeoutMs: 1000,
    classicCopy: false,
  })
  t.equal(c.history.idempotencyTtlS, 600)
  const p = loadConfig({ ...auth, REDIS_URL: 'rediss://cache.example:6380', REDIS_PASSWORD: 'from-a-secret' }).redis
  t.equal(p?.password, 'from-a-secret', 'a password kept out of the URL')
})

t.test('Sentinel: the sentinels, the master group, credentials for both', async (t) => {
  const c = loadConfig({
    ...auth,
    REDIS_SENTINELS: '10.0.0.1:26379, 10.0.0.2:26379,[fd00::3]:26379',
    REDIS_SENTINEL_NAME: 'notify',
    REDIS_USERNAME: 'svc',
    REDIS_PASSWORD: 'node-secret',
    REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
    REDIS_TLS: 'true',
  })
  t.same(c.redis?.topology, {
    kind: 'sentinel',
    name: 'notify',
    sentinels: [
      { host: '10.0.0.1', port: 26379 },
      { host: '10.0.0.2', port: 26379 },
      { host: 'fd00::3', port: 26379 },
    ],
  })
  t.match(c.redis, { username: 'svc', password: 'node-secret', sentinelPassword: 'sentinel-secret', tls: true })
  fails(t, { REDIS_SENTINELS: '10.0.0.1:26379' }, /REDIS_SENTINEL_NAME/, 'sentinels without the group name')
  fails(t, { REDIS_SENTINEL_NAME: 'notify' }, /REDIS_SENTINEL_NAME needs REDIS_SENTINELS/, 'a group name alone')
})

t.test('Cluster: seed nodes', async (t) => {
  const c = loadConfig({ ...auth, REDIS_CLUSTER_NODES: 'redis-0.redis:6379,redis-1.redis:6379', PUBLISH_WAIT_REPLICAS: '1' })
  t.same(c.redis?.topology, {
    kind: 'cluster',
    nodes: [
      { host: 'redis-0.redis', port: 6379 },
      { host: 'redis-1.redis', port: 6379 },
    ],
  })
  t.equal(c.redis?.waitReplicas, 1)
  fails(t, { REDIS_CLUSTER_NODES: 'redis-0' }, /REDIS_CLUSTER_NODES: "redis-0" is not host:port/, 'no port')
  fails(t, { REDIS_CLUSTER_NODES: 'a:6379,b:70000' }, /REDIS_CLUSTER_NODES: "b:70000"/, 'port out of range')
  fails(t, { REDIS_CLUSTER_NODES: ' , ' }, /REDIS_CLUSTER_NODES is empty/, 'only commas')
  fails(t, { REDIS_CLUSTER_NODES: 'a:1', REDIS_SENTINEL_PASSWORD: 'x' }, /REDIS_SENTINEL_PASSWORD only apply with REDIS_SENTINELS/, 'sentinel credentials')
})

t.test('conflicting or stray settings name the variables', async (t) => {
  fails(t, { REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:6379' }, /REDIS_URL and REDIS_CLUSTER_NODES/, 'two deployments')
  fails(
    t,
    { REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'm', REDIS_CLUSTER_NODES: 'b:6379' },
    /REDIS_SENTINELS and REDIS_CLUSTER_NODES/,
    'sentinel and cluster',
  )
  fails(t, { REDIS_URL: 'redis://:inline@a:6379', REDIS_PASSWORD: 'p' }, /REDIS_PASSWORD and a password in REDIS_URL/, 'two passwords')
  fails(t, { REDIS_URL: 'redis://a:6379', REDIS_TLS: 'true' }, /rediss:\/\//, 'REDIS_TLS with a URL')
  fails(t, { REDIS_URL: 'redis://a:6379', REDIS_USERNAME: 'u' }, /REDIS_USERNAME/, 'a username beside the URL')
  fails(t, { REDIS_PASSWORD: 'p' }, /REDIS_PASSWORD set without REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES/, 'credentials without Redis')
  fails(t, { PUBLISH_WAIT_REPLICAS: '1' }, /PUBLISH_WAIT_REPLICAS set without/, 'WAIT without Redis')
  fails(t, { PUBLISH_CLASSIC_COPY: 'true' }, /PUBLISH_CLASSIC_COPY set without/, 'classic copy without Redis')
  fails(
    t,
    { REDIS_URL: 'redis://a:6379', PUBLISH_WAIT_REPLICAS: '1', PUBLISH_WAIT_TIMEOUT_MS: '2000' },
    /PUBLISH_WAIT_TIMEOUT_MS must be below REDIS_COMMAND_TIMEOUT_MS/,
    'a WAIT longer than the call bound',
  )
  fails(t, { REDIS_URL: 'redis://a:6379', REDIS_COMMAND_TIMEOUT_MS: '10' }, /REDIS_COMMAND_TIMEOUT_MS/, 'a bound below 100 ms')
})

t.test('NOTIFY_CHANNEL: no braces (Cluster hash tags), no spaces', async (t) => {
  t.equal(loadConfig({ ...auth, NOTIFY_CHANNEL: 'app:notifications' }).channel, 'app:notifications')
  fails(t, { NOTIFY_CHANNEL: 'notify{eu}' }, /NOTIFY_CHANNEL/, 'braces would move keys between slots')
  fails(t, { NOTIFY_CHANNEL: 'a}b' }, /NOTIFY_CHANNEL/, 'a closing brace')
  fails(t, { NOTIFY_CHANNEL: 'two words' }, /NOTIFY_CHANNEL/, 'a space')
})

t.test('no Redis setting: the embedded broker', async (t) => {
  t.equal(loadConfig(auth).redis, undefined)
})

t.test('secrets never appear in an error message', async (t) => {
  try {
    loadConfig({ ...auth, REDIS_URL: 'redis://:hunter2-secret@a:6379', REDIS_PASSWORD: 'other-secret' })
    t.fail('should throw')
  } catch (err) {
    t.notMatch((err as Error).message, /hunter2|other-secret/)
  }
})
