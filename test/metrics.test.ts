// GET /metrics: Prometheus text format, one registry per app. Every number is
// driven by a known sequence of requests and events and asserted exactly; the
// text is parsed by our own parser (test/helpers/metrics.ts), not prom-client.
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import t from 'tap'
import type { RedisBroker } from '../src/broker/redis-broker.js'
import { loadConfig } from '../src/config.js'
import type { SseStream } from '../src/sse/stream.js'
import { type Built, build } from './helpers/app.js'
import { holdRequest } from './helpers/held-request.js'
import { openBacklogged, openStalled } from './helpers/hub.js'
import { type Metrics, metricsOf, parseMetrics, scrape } from './helpers/metrics.js'
import { startRedis } from './helpers/redis.js'
import { openStream } from './helpers/sse.js'

const NEEDS_OWN_REDIS = process.env.TEST_REDIS_URL ? 'TEST_REDIS_URL is set: cannot stop that server' : false

const OUTCOMES = ['ok', 'unauthorized', 'auth_unavailable', 'limited', 'draining']
const CLOSE_REASONS = ['client', 'slow', 'expired', 'shutdown', 'unavailable']
const SOURCES = ['redis', 'publish']
const DROP_REASONS = ['too_large', 'not_json', 'not_object', 'bad_recipient', 'bad_type', 'reserved_type', 'bad_envelope']
const RESYNC_REASONS = ['malformed', 'foreign', 'gone']
const LOOKUPS = ['hit', 'miss', 'shared']

/** Every label value at 0, except the ones given. */
const counts = (keys: string[], nonZero: Record<string, number> = {}): Record<string, number> =>
  Object.fromEntries(keys.map((k) => [k, nonZero[k] ?? 0]))

const auth = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

const METRICS_TOKEN = 'metrics-token-0123456789abcdef'

/** The whole state of the service's own metrics, to compare in one t.same (a diff shows every wrong number). */
function snapshot(m: Metrics) {
  return {
    streams_open: m.value('notify_streams_open'),
    users_connected: m.value('notify_users_connected'),
    opened: m.by('notify_streams_opened_total', 'outcome'),
    closed: m.by('notify_streams_closed_total', 'reason'),
    received: m.by('notify_events_received_total', 'source'),
    dropped: m.by('notify_events_dropped_total', 'reason'),
    deliveries: m.value('notify_deliveries_total'),
    replayed: m.value('notify_events_replayed_total'),
    resyncs: m.by('notify_resyncs_total', 'reason'),
    catch_ups: m.value('notify_catch_ups_total'),
  }
}

type Snapshot = ReturnType<typeof snapshot>

/** What a fresh app reports, with the given differences. */
function expected(over: Partial<Snapshot> = {}): Snapshot {
  return {
    streams_open: 0,
    users_connected: 0,
    opened: counts(OUTCOMES),
    closed: counts(CLOSE_REASONS),
    received: counts(SOURCES),
    dropped: counts(DROP_REASONS),
    deliveries: 0,
    replayed: 0,
    resyncs: counts(RESYNC_REASONS),
    catch_ups: 0,
    ...over,
  }
}

/** `notify_auth_duration_seconds_count` for one (mode, outcome). */
const authCount = (m: Metrics, mode: string, outcome: string) =>
  m.value('notify_auth_duration_seconds_count', { mode, outcome })

/** Resolves with the reason when the hub closes a stream of `user`. */
function closedStream(s: Built, user: string): Promise<string> {
  return new Promise((resolve) => {
    const onClose = (stream: SseStream, reason: string) => {
      if (stream.userId !== user) return
      s.app.notifier.hub.off('close', onClose)
      resolve(reason)
    }
    s.app.notifier.hub.on('close', onClose)
  })
}

t.test('a fresh app: 200 in text format 0.0.4, every labelled counter at 0, default metrics', async (t) => {
  const s = await build(t)
  const r = await scrape(s.base)
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const m = r.metrics
  t.same(snapshot(m), expected())
  t.same(m.by('notify_auth_cache_lookups_total', 'result'), counts(LOOKUPS), 'cache lookups at 0 in upstream mode')
  t.equal(m.value('notify_redis_subscription_up'), 1, 'subscribed')

  const types: Record<string, string> = {
    notify_streams_open: 'gauge',
    notify_users_connected: 'gauge',
    notify_streams_opened_total: 'counter',
    notify_streams_closed_total: 'counter',
    notify_events_received_total: 'counter',
    notify_events_dropped_total: 'counter',
    notify_deliveries_total: 'counter',
    notify_events_replayed_total: 'counter',
    notify_resyncs_total: 'counter',
    notify_catch_ups_total: 'counter',
    notify_auth_duration_seconds: 'histogram',
    notify_auth_cache_lookups_total: 'counter',
    notify_redis_subscription_up: 'gauge',
  }
  // prom-client writes `# TYPE` with the family name (without _total for counters in some versions).
  for (const [name, type] of Object.entries(types)) {
    const family = m.types.get(name) ?? m.types.get(name.replace(/_total$/, ''))
    t.equal(family, type, `${name} is a ${type}`)
  }
  for (const name of ['process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes']) {
    t.ok(m.has(name), `default metric ${name}`)
  }
  t.equal(m.samples.filter((x) => x.name === 'nodejs_eventloop_lag_seconds').length, 1)
})

t.test('one registry per app: two apps in one process count separately', async (t) => {
  const one = await build(t, { broker: 'embedded' })
  const two = await build(t, { broker: 'embedded' })
  await openStream(t, `${one.base}/notify`, auth('user-x'))
  t.same((await metricsOf(one.base)).by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES, { ok: 1 }))
  t.same((await metricsOf(two.base)).by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES))
  t.equal((await metricsOf(two.base)).value('notify_streams_open'), 0)
})

t.test('a known sequence on the Redis broker: exact numbers', async (t) => {
  const s = await build(t)
  const url = `${s.base}/notify`
  const hub = s.app.notifier.hub

  // Connects: a twice (the second from the auth cache), b once.
  const a1 = await openStream(t, url, auth('user-a'))
  const a2 = await openStream(t, url, auth('user-a'))
  const b = await openStream(t, url, auth('user-b'))
  let m = await metricsOf(s.base)
  t.same(snapshot(m), expected({ streams_open: 3, users_connected: 2, opened: counts(OUTCOMES, { ok: 3 }) }), 'after 3 connects')

  // Refused: a token the upstream rejects (401), one it answers 500 for (503).
  const bad = await openStream(t, url, auth('nope'))
  t.equal(bad.status, 401)
  const down = await openStream(t, url, auth('status-500'))
  t.equal(down.status, 503)

  // Live events through raw Redis PUBLISH, with two bad messages in between.
  await s.publish({ recipient_id: 'a', type: 'one' })
  await s.publish('not json at all')
  await s.publish({ type: 'no recipient' })
  await s.publish({ recipient_id: 'a', type: 'two' })
  await s.publish({ recipient_id: 'b', type: 'three' })
  for (const st of [a1, a2]) t.same((await st.nextEvents(2)).map((e) => e.event), ['one', 'two'])
  t.same((await b.nextEvents(1)).map((e) => e.event), ['three'])
  m = await metricsOf(s.base)
  t.same(
    snapshot(m),
    expected({
      streams_open: 3,
      users_connected: 2,
      opened: counts(OUTCOMES, { ok: 3, unauthorized: 1, auth_unavailable: 1 }),
      received: counts(SOURCES, { redis: 5 }),
      dropped: counts(DROP_REASONS, { not_json: 1, bad_recipient: 1 }),
      deliveries: 5,
    }),
    'after 5 channel messages, 2 of them bad',
  )

  // One of a's streams goes away.
  const closed = once(hub, 'close')
  a2.close()
  const [, reason] = await closed
  t.equal(reason, 'client')

  // a comes back with a malformed Last-Event-ID: resync.
  const a3 = await openStream(t, url, { ...auth('user-a'), 'last-event-id': 'garbage' })
  t.equal((await a3.nextEvents(1))[0]?.event, 'resync')

  // Three events stored for r through the app's publisher (counted under publish
  // when accepted). r has no stream here, so they never come back off Redis:
  // per-user routing. A marker for b proves the channel has been drained.
  const stored = await s.store([
    { recipient_id: 'r', type: 'stored', n: 0 },
    { recipient_id: 'r', type: 'stored', n: 1 },
    { recipient_id: 'r', type: 'stored', n: 2 },
  ])
  await s.publish({ recipient_id: 'b', type: 'marker' })
  t.equal((await b.nextEvents(2))[1]?.event, 'marker')

  // r reconnects from its first event: the two after it are replayed.
  const r = await openStream(t, url, { ...auth('user-r'), 'last-event-id': stored[0]?.id ?? '' })
  const replayed = await r.nextEvents(2)
  t.same(replayed.map((e) => e.id), [stored[1]?.id, stored[2]?.id])

  m = await metricsOf(s.base)
  t.same(
    snapshot(m),
    expected({
      streams_open: 4, // a1, a3, b, r
      users_connected: 3,
      opened: counts(OUTCOMES, { ok: 5, unauthorized: 1, auth_unavailable: 1 }),
      closed: counts(CLOSE_REASONS, { client: 1 }),
      received: counts(SOURCES, { redis: 5 + 1, publish: 3 }),
      dropped: counts(DROP_REASONS, { not_json: 1, bad_recipient: 1 }),
      deliveries: 5 + 1, // the marker; replays on connect and the resync are not deliveries
      replayed: 2,
      resyncs: counts(RESYNC_REASONS, { malformed: 1 }),
    }),
    'final state',
  )
  t.equal(authCount(m, 'upstream', 'ok'), 5, 'one observation per successful connect (cache hits included)')
  t.equal(authCount(m, 'upstream', 'unauthorized'), 1)
  t.equal(authCount(m, 'upstream', 'unavailable'), 1)
  t.equal(m.value('notify_auth_duration_seconds_bucket', { mode: 'upstream', outcome: 'ok', le: '+Inf' }), 5)
  const sum = m.value('notify_auth_duration_seconds_sum', { mode: 'upstream', outcome: 'ok' })
  t.ok(sum !== undefined && sum > 0 && sum < 5, `duration sum in seconds (${sum})`)
  // a: miss, hit, hit; b, nope, status-500, r: miss.
  t.same(m.by('notify_auth_cache_lookups_total', 'result'), counts(LOOKUPS, { hit: 2, miss: 5 }))
  t.equal(m.value('notify_redis_subscription_up'), 1)
  t.equal(s.upstream.calls.get('user-a'), 1, 'the upstream saw a once (the cache did the rest)')
})

t.test('a message with recipient_ids counts once received, once delivered per stream', async (t) => {
  const s = await build(t, { env: { PUBLISH_TOKEN: METRICS_TOKEN } })
  const url = `${s.base}/notify`
  const p = await openStream(t, url, auth('user-p'))
  const q = await openStream(t, url, auth('user-q'))
  await s.publish({ recipient_ids: ['p', 'q', 'nobody'], type: 'raw' })
  for (const st of [p, q]) t.equal((await st.nextEvents(1))[0]?.event, 'raw')
  let m = await metricsOf(s.base)
  t.same(m.by('notify_events_received_total', 'source'), counts(SOURCES, { redis: 1 }))
  t.equal(m.value('notify_deliveries_total'), 2)

  // Through POST /publish: one copy per recipient accepted (publish), and one
  // channel message per recipient stored by the script (redis).
  const res = await fetch(`${s.base}/publish`, {
    method: 'POST',
    headers: { ...auth(METRICS_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ recipient_ids: ['p', 'q'], type: 'posted' }),
  })
  t.equal(res.status, 202)
  for (const st of [p, q]) t.equal((await st.nextEvents(2))[1]?.event, 'posted')
  // A refused batch is not counted.
  const refused = await fetch(`${s.base}/publish`, {
    method: 'POST',
    headers: { ...auth(METRICS_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify([{ recipient_id: 'p' }, { recipient_id: 'q', type: 'bad type' }]),
  })
  t.equal(refused.status, 400)
  m = await metricsOf(s.base)
  t.same(m.by('notify_events_received_total', 'source'), counts(SOURCES, { redis: 3, publish: 2 }))
  t.equal(m.value('notify_deliveries_total'), 4)
})

t.test('a slow consumer closed: closed{slow}=1; every channel message counted', async (t) => {
  const s = await build(t, { env: { SSE_MAX_BUFFER_BYTES: '65536', MAX_EVENT_BYTES: '16384' } })
  const healthy = await openStream(t, `${s.base}/notify`, auth('user-fast'))

  // A raw socket that sends its request and then never reads.
  await openStalled(t, s, 'user-slow')

  const closed = closedStream(s, 'slow')
  let done = false
  void closed.then(() => (done = true))
  const payload = 'x'.repeat(15_000)
  const publisher = s.redis.client()
  let sent = 0
  for (let batch = 0; batch < 200 && !done; batch++) {
    const p = publisher.pipeline()
    for (let i = 0; i < 50; i++) p.publish('notifications', JSON.stringify({ recipient_id: 'slow', payload }))
    await p.exec()
    sent += 50
  }
  t.equal(await closed, 'slow')
  await s.publish({ recipient_id: 'fast', type: 'still-fine' })
  t.equal((await healthy.nextEvents(1))[0]?.event, 'still-fine')

  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_closed_total', 'reason'), counts(CLOSE_REASONS, { slow: 1 }))
  t.same(m.by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES, { ok: 2 }))
  t.equal(m.value('notify_streams_open'), 1)
  t.equal(m.value('notify_users_connected'), 1)
  t.same(m.by('notify_events_received_total', 'source'), counts(SOURCES, { redis: sent + 1 }))
})

t.test('concurrent connects with one token: one miss, then shared, then hit', async (t) => {
  const s = await build(t)
  const url = `${s.base}/notify`
  await Promise.all([openStream(t, url, auth('slow-300-sh')), openStream(t, url, auth('slow-300-sh'))])
  t.equal(s.upstream.calls.get('slow-300-sh'), 1, 'one upstream call for both (else the requests did not overlap)')
  await openStream(t, url, auth('slow-300-sh'))
  const m = await metricsOf(s.base)
  t.same(m.by('notify_auth_cache_lookups_total', 'result'), counts(LOOKUPS, { miss: 1, shared: 1, hit: 1 }))
  t.equal(authCount(m, 'upstream', 'ok'), 3)
  t.same(m.by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES, { ok: 3 }))
  t.equal(m.value('notify_users_connected'), 1)
})

t.test('jwt mode: observed under mode="jwt"; no cache lookups; an expired stream', async (t) => {
  const { SignJWT } = await import('jose')
  const secret = 'test-secret-that-is-long-enough-for-hs256!'
  // The stream of a token that expires is ended in-band (expired). The token is
  // checked on connect by jose (the real clock) and its stream ended at exp by
  // the hub's clock (AppDeps.now): a token that really expired 1 to 2 s after
  // it was signed could be refused on connect under CPU load. So it is valid
  // for 10 minutes, and the hub's clock stands 250 ms short of its exp (the hub
  // rechecks every 250 ms) until the test lets it run.
  const soonExp = Math.floor(Date.now() / 1000) + 600
  let now = (): number => soonExp * 1000 - 250
  const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_SECRET: secret }, deps: { now: () => now() } })
  const token = await new SignJWT({ sub: 'j' })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret))
  const ok = await openStream(t, `${s.base}/notify`, auth(token))
  t.equal(ok.status, 200)
  const bad = await openStream(t, `${s.base}/notify`, auth(`${token.slice(0, -2)}xx`))
  t.equal(bad.status, 401)
  const soon = await new SignJWT({ sub: 'k' })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(soonExp)
    .sign(new TextEncoder().encode(secret))
  const expired = closedStream(s, 'k')
  const short = await openStream(t, `${s.base}/notify`, auth(soon))
  t.equal(short.status, 200)
  const from = Date.now()
  now = () => soonExp * 1000 + (Date.now() - from)
  t.equal(await expired, 'expired')
  const m = await metricsOf(s.base)
  t.same(m.by('notify_streams_closed_total', 'reason'), counts(CLOSE_REASONS, { expired: 1 }))
  t.equal(m.value('notify_streams_open'), 1)
  t.equal(authCount(m, 'jwt', 'ok'), 2)
  t.equal(authCount(m, 'jwt', 'unauthorized'), 1)
  t.equal(authCount(m, 'upstream', 'ok') ?? 0, 0, 'nothing under upstream')
  const lookups = Object.values(m.has('notify_auth_cache_lookups_total') ? m.by('notify_auth_cache_lookups_total', 'result') : {})
  t.equal(lookups.reduce((a, b) => a + b, 0), 0, 'no cache in jwt mode')
  t.same(m.by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES, { ok: 2, unauthorized: 1 }))
})

t.test('resyncs: each reason counted', async (t) => {
  const s = await build(t, { broker: 'embedded' })
  const [bobs] = await s.store({ recipient_id: 'bob', type: 'x' })
  await s.store({ recipient_id: 'al', type: 'x' })
  const tag = createHash('sha1').update('al', 'utf8').digest('hex').slice(0, 8)
  for (const id of ['garbage', bobs?.id ?? '', `1-0.${tag}`]) {
    const st = await openStream(t, `${s.base}/notify`, { ...auth('user-al'), 'last-event-id': id })
    t.equal((await st.nextEvents(1))[0]?.event, 'resync', `resync for ${id}`)
  }
  const m = await metricsOf(s.base)
  t.same(m.by('notify_resyncs_total', 'reason'), counts(RESYNC_REASONS, { malformed: 1, foreign: 1, gone: 1 }))
  t.equal(m.value('notify_events_replayed_total'), 0)
  t.equal(m.value('notify_deliveries_total'), 0)
})

t.test('redis subscription gauge: 1, 0 while Redis is down, 1 again; one catch-up', { skip: NEEDS_OWN_REDIS }, async (t) => {
  const redis = await startRedis(t)
  const s = await build(t, { redis })
  const broker = s.app.notifier.broker as RedisBroker
  // A stream to catch up (with none open, an outage needs no catch-up).
  await openStream(t, `${s.base}/notify`, auth('user-g'))
  let m = await metricsOf(s.base)
  t.equal(m.value('notify_redis_subscription_up'), 1)
  t.equal(m.value('notify_catch_ups_total'), 0, 'the first subscription is no catch-up')

  const down = Promise.all([once(broker, 'down'), once(broker.subscriptions, 'down')])
  await redis.stop()
  await down
  m = await metricsOf(s.base)
  t.equal(m.value('notify_redis_subscription_up'), 0)
  t.equal(m.value('notify_catch_ups_total'), 0)

  const up = once(broker, 'up')
  await redis.start()
  await up
  m = await metricsOf(s.base)
  t.equal(m.value('notify_redis_subscription_up'), 1)
  t.equal(m.value('notify_catch_ups_total'), 1)
})

t.test('events caught up after an outage count as replayed, not as live deliveries', async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const s = await build(t, { redis })
  const broker = s.app.notifier.broker
  const stream = await openStream(t, `${s.base}/notify`, auth('user-c'))
  const [live] = await s.store({ recipient_id: 'c', type: 'live' })
  t.equal((await stream.nextEvents(1))[0]?.id, live?.id)

  // An outage with nothing racing it: Redis refuses new connections (maxclients
  // below the count), then the subscriber connection is killed; it cannot come
  // back until maxclients is raised. The command connection stays.
  const clients = Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))?.[1])
  await admin.config('SET', 'maxclients', String(clients - 1))
  const down = once(broker, 'down')
  t.equal(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, 'the one subscriber connection')
  await down
  const missed = await s.store([
    { recipient_id: 'c', type: 'missed', n: 1 },
    { recipient_id: 'c', type: 'missed', n: 2 },
  ])
  let m = await metricsOf(s.base)
  t.equal(m.value('notify_redis_subscription_up'), 0)

  const up = once(broker, 'up')
  await admin.config('SET', 'maxclients', '10000')
  await up
  const events = await stream.nextEvents(3)
  t.same(events.slice(1).map((e) => e.id), missed.map((p) => p.id), 'caught up')
  m = await metricsOf(s.base)
  t.same(
    snapshot(m),
    expected({
      streams_open: 1,
      users_connected: 1,
      opened: counts(OUTCOMES, { ok: 1 }),
      received: counts(SOURCES, { redis: 1, publish: 3 }),
      deliveries: 1,
      replayed: 2,
      catch_ups: 1,
    }),
  )
  t.equal(m.value('notify_redis_subscription_up'), 1)
})

t.test('embedded broker: stored copies count under publish; no Redis gauge', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { PUBLISH_TOKEN: METRICS_TOKEN } })
  const e = await openStream(t, `${s.base}/notify`, auth('user-e'))
  await s.store({ recipient_id: 'e', type: 'one' })
  await s.store({ recipient_ids: ['e', 'f'], type: 'two' })
  const res = await fetch(`${s.base}/publish`, {
    method: 'POST',
    headers: { ...auth(METRICS_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify([{ recipient_id: 'g', type: 'three' }, { recipient_ids: ['e', 'g'], type: 'four' }]),
  })
  t.equal(res.status, 202)
  t.same((await e.nextEvents(3)).map((x) => x.event), ['one', 'two', 'four'])
  const m = await metricsOf(s.base)
  t.same(
    snapshot(m),
    expected({
      streams_open: 1,
      users_connected: 1,
      opened: counts(OUTCOMES, { ok: 1 }),
      received: counts(SOURCES, { publish: 1 + 2 + 1 + 2 }),
      deliveries: 3,
    }),
  )
  t.notOk(m.has('notify_redis_subscription_up'), 'no Redis gauge with the embedded broker')
  t.ok(m.has('process_cpu_user_seconds_total'))
})

t.test('shutdown: closed{shutdown} and opened{draining}', async (t) => {
  const s = await build(t, { env: { SHUTDOWN_TIMEOUT_MS: '6000', SSE_MAX_BUFFER_BYTES: '8388608' } })
  // A client that stopped reading holds the drain for the grace period.
  const stuck = await openBacklogged(t, s, 'stuck')
  // The listening socket closes as the drain begins: these come on connections in use.
  const heldNotify = await holdRequest(t, s.base, '/notify', auth('user-late'))
  const heldMetrics = await holdRequest(t, s.base, '/metrics')
  const ending = once(s.app.notifier.hub, 'close')
  const closing = s.app.close()
  await ending

  const late = await heldNotify.complete()
  t.match(late.body, /^retry: \d+\n\n$/, 'turned away')
  const m = parseMetrics((await heldMetrics.complete()).body)
  t.same(m.by('notify_streams_opened_total', 'outcome'), counts(OUTCOMES, { ok: 1, draining: 1 }))
  t.same(m.by('notify_streams_closed_total', 'reason'), counts(CLOSE_REASONS, { shutdown: 1 }))
  t.equal(m.value('notify_streams_open'), 0)
  stuck.destroy()
  await closing
})

t.test('METRICS_TOKEN', async (t) => {
  const s = await build(t, { env: { METRICS_TOKEN } })
  const refusals: [string, Record<string, string>][] = [
    ['no Authorization header', {}],
    ['wrong token', auth('wrong-token-0123456789abcdef')],
    ['the token less its last character', auth(METRICS_TOKEN.slice(0, -1))],
    ['the token with one more character', auth(`${METRICS_TOKEN}x`)],
    ['wrong scheme', { authorization: `Basic ${METRICS_TOKEN}` }],
    ['no scheme', { authorization: METRICS_TOKEN }],
    ['a /notify user token', auth('user-1')],
  ]
  for (const [what, headers] of refusals) {
    const r = await scrape(s.base, undefined, headers)
    t.equal(r.status, 401, `${what}: 401`)
    t.equal(r.headers.get('www-authenticate'), 'Bearer realm="metrics"', `${what}: WWW-Authenticate`)
    t.equal(JSON.parse(r.text).code, 'NOTIFY_METRICS_UNAUTHORIZED', `${what}: code`)
    t.notMatch(r.text, /notify_streams_open/, `${what}: no metrics`)
    t.notMatch(r.text, METRICS_TOKEN, `${what}: the token is not echoed`)
  }
  const ok = await scrape(s.base, METRICS_TOKEN)
  t.equal(ok.status, 200)
  t.match(ok.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.equal(ok.metrics.value('notify_streams_open'), 0)
  t.notMatch(s.rawLogs(), METRICS_TOKEN, 'the token is never logged')

  // Unset: open (the other tests); too short: start-up fails naming it.
  t.throws(
    () => loadConfig({ AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1/me', METRICS_TOKEN: 'short-token-15c' }),
    { name: 'ConfigError', message: /METRICS_TOKEN/ },
  )
})

