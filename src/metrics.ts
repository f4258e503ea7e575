// Prometheus metrics, one registry per app. Delivery counters already live in
// plain objects (hub, ingest, resumer stats) and are read only when scraped, so
// the hot path pays nothing for them; the per-connect metrics (outcomes, auth
// time, cache) are recorded as they happen. Meaning and alerts: README, Metrics.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { CacheLookup } from './auth/principal.js'
import type { Broker } from './broker/broker.js'
import type { AuthConfig } from './config.js'
import type { IngestStats } from './ingest.js'
import type { HubStats } from './sse/hub.js'
import type { ResumeStats } from './sse/resume.js'

/** How a GET /notify ended: a stream, or why not. */
export type OpenOutcome = 'ok' | 'unauthorized' | 'auth_unavailable' | 'limited' | 'draining'
export type AuthOutcome = 'ok' | 'unauthorized' | 'unavailable'

export interface MetricSources {
  hub: { readonly size: number; readonly users: number; readonly stats: HubStats }
  ingest: { readonly stats: IngestStats }
  resumer: { readonly stats: ResumeStats }
  broker: Pick<Broker, 'kind' | 'up'> & {
    /** Redis broker: what this instance takes off Redis (subscriptions.ts). */
    subscriptions?: { readonly channels: number; readonly links: number; readonly received: { classic: number; user: number } }
  }
  /** (event, recipient) copies accepted by POST /publish and the in-process publisher. */
  published: () => number
  authMode: AuthConfig['mode']
}

export interface Metrics {
  readonly registry: Registry
  opened(outcome: OpenOutcome): void
  authDone(outcome: AuthOutcome, seconds: number): void
  cacheLookup(result: CacheLookup): void
}

const OPEN_OUTCOMES: readonly OpenOutcome[] = ['ok', 'unauthorized', 'auth_unavailable', 'limited', 'draining']
const AUTH_OUTCOMES: readonly AuthOutcome[] = ['ok', 'unauthorized', 'unavailable']
const CACHE_RESULTS: readonly CacheLookup[] = ['hit', 'miss', 'shared']
// From a cached answer (well under 1 ms) to the upstream timeout's range.
const AUTH_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createMetrics(src: MetricSources): Metrics {
  const registry = new Registry()
  // The event-loop delay monitor wakes the process every `precision` ms, even
  // with nothing to do: at prom-client's 10 ms that was most of an idle
  // instance's CPU (8 of its 12 ms/s). Stalls worth seeing last longer than 100 ms.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 })
  const registers = [registry]

  gauge(registry, 'notify_streams_open', 'Streams open now.', () => src.hub.size)
  gauge(registry, 'notify_users_connected', 'Users with at least one open stream.', () => src.hub.users)
  if (src.broker.kind === 'redis') {
    gauge(registry, 'notify_redis_subscription_up', '1 while the Redis subscriptions and command connection work.', () =>
      src.broker.up ? 1 : 0,
    )
  }
  const subs = src.broker.subscriptions
  if (subs !== undefined) {
    // The instance's own cost: with per-user routing it grows with its own users, not with the fleet's.
    mirrorBy(registry, 'notify_redis_messages_total', 'Messages taken off Redis, by channel: classic (NOTIFY_CHANNEL) or user (users with a stream here).', 'channel', () => subs.received)
    gauge(registry, 'notify_redis_user_channels', "Users' own channels this instance is subscribed to.", () => subs.channels)
    gauge(registry, 'notify_redis_subscriber_connections', 'Subscriber connections (one per Redis Cluster master in use; one otherwise).', () => subs.links)
    mirror(registry, 'notify_redis_classic_copies_skipped_total', 'Copies on the classic channel (PUBLISH_CLASSIC_COPY) skipped: the same events arrive on users\' own channels.', () => src.ingest.stats.copies)
  }

  const opened = new Counter({
    name: 'notify_streams_opened_total',
    help: 'GET /notify requests by outcome.',
    labelNames: ['outcome'],
    registers,
  })
  for (const outcome of OPEN_OUTCOMES) opened.inc({ outcome }, 0)
  mirrorBy(registry, 'notify_streams_closed_total', 'Streams closed, by reason (slow: slow consumer).', 'reason', () => src.hub.stats.closed)
  mirrorBy(registry, 'notify_events_received_total', 'Events received, by source.', 'source', () => ({
    redis: src.ingest.stats.received,
    publish: src.published(),
  }))
  mirrorBy(registry, 'notify_events_dropped_total', 'Channel messages dropped as invalid, by reason.', 'reason', () => src.ingest.stats.dropped)
  mirror(registry, 'notify_deliveries_total', 'Live event frames written to streams.', () => src.hub.stats.deliveries)
  mirror(registry, 'notify_events_replayed_total', 'Events sent from history (reconnects and catch-ups).', () => src.resumer.stats.replayed)
  mirrorBy(registry, 'notify_resyncs_total', 'resync events sent, by reason.', 'reason', () => src.resumer.stats.resyncs)
  mirror(registry, 'notify_catch_ups_total', 'Catch-ups from history after the broker came back.', () => src.resumer.stats.catchUps)

  const authTime = new Histogram({
    name: 'notify_auth_duration_seconds',
    help: 'Time to authenticate a connect, by auth mode and outcome.',
    labelNames: ['mode', 'outcome'],
    buckets: AUTH_BUCKETS,
    registers,
  })
  for (const outcome of AUTH_OUTCOMES) authTime.zero({ mode: src.authMode, outcome })

  const cache = new Counter({
    name: 'notify_auth_cache_lookups_total',
    help: 'Auth cache lookups (upstream and introspection modes): hit, miss (called the auth server), shared (joined a call in flight).',
    labelNames: ['result'],
    registers,
  })
  if (src.authMode !== 'jwt') for (const result of CACHE_RESULTS) cache.inc({ result }, 0)

  return {
    registry,
    opened: (outcome) => opened.inc({ outcome }),
    authDone: (outcome, seconds) => authTime.observe({ mode: src.authMode, outcome }, seconds),
    cacheLookup: (result) => cache.inc({ result }),
  }
}

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read())
    },
  })
}

// Counters whose values are kept elsewhere (a stats object) and copied in at
// scrape time: a Counter can only grow, so it is reset and set to the total.
function mirror(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset()
      this.inc(read())
    },
  })
}

/** As mirror, one series per key of what `read` returns. */
function mirrorBy(registry: Registry, name: string, help: string, label: string, read: () => Record<string, number>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset()
      for (const [value, n] of Object.entries(read())) this.inc({ [label]: value }, n)
    },
  })
}
