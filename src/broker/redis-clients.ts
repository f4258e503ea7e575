// The one place that turns the Redis configuration into ioredis clients: the
// command client (a Redis, following a Sentinel master, or a Cluster) and the
// options of subscriber connections. Topology (master discovery, slot maps,
// MOVED/ASK) is ioredis's; what is set here is that every call is bounded in
// time and that nothing is ever sent twice behind the caller's back.
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import type { HostPort, RedisConfig } from '../redis-config.js'
import { deadline } from './deadline.js'

export type CommandClient = Redis | Cluster

/**
 * Reconnect back-off: fast at first, at most 500 ms between tries, never giving
 * up. After a failover the new master is there within seconds: a longer
 * back-off would only add to the outage.
 */
const retryStrategy = (times: number): number => Math.min(times * 50, 500)

/**
 * How often a Cluster's slot map is read while nothing looks wrong. ioredis
 * opens a new connection for each reading and rebuilds its 16,384-slot tables:
 * every 2 s that was most of an idle instance's CPU (14 ms/s; 5.5 at 10 s).
 * MOVED answers and a subscriber's unasked-for sunsubscribe refresh it at once.
 */
const SLOTS_REFRESH_MS = 10_000
/** At most this often while something looks wrong (refreshSlotsSoon): a failover is then noticed within a second or so. */
export const SLOTS_REFRESH_SOON_MS = 1000
const lastSoonRefresh = new WeakMap<Cluster, number>()

/**
 * Reads the slot map again now unless that was done less than a second ago: a
 * node's connection failed, a call timed out, a subscription was lost. A
 * replica promoted in a failover is then used within a second of the slot
 * map saying so, not at the next periodic reading.
 */
export function refreshSlotsSoon(cluster: Cluster): void {
  const now = performance.now()
  if (now - (lastSoonRefresh.get(cluster) ?? -Infinity) < SLOTS_REFRESH_SOON_MS) return
  lastSoonRefresh.set(cluster, now)
  cluster.refreshSlotsCache()
}

/** What every connection shares: credentials, TLS, and the bounds on a call. */
function baseOptions(config: RedisConfig, name: string): RedisOptions {
  return {
    ...(config.username !== undefined && { username: config.username }),
    ...(config.password !== undefined && { password: config.password }),
    ...(config.tls && { tls: {} }),
    connectionName: name,
    lazyConnect: true,
    // A command fails after this long without an answer...
    commandTimeout: config.commandTimeoutMs,
    // ...and a connection that sent a command and heard nothing for that long is
    // dropped and reconnected: a hung or partitioned node keeps TCP open, and
    // keepalive alone would take minutes to notice.
    socketTimeout: config.commandTimeoutMs,
    connectTimeout: Math.max(config.commandTimeoutMs, 1000),
    keepAlive: 10_000,
    retryStrategy,
  }
}

/** Options of a command connection: fail fast, never resend. */
function commandOptions(config: RedisConfig): RedisOptions {
  return {
    ...baseOptions(config, 'notify-commands'),
    // Fail at once while disconnected: /publish answers 503 rather than accept
    // what it cannot store, and a stream is told to come back.
    enableOfflineQueue: false,
    // Never resend a command after a reconnect: a publish might run twice.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  }
}

/** Sentinel: where the master is asked for, and with which credentials. */
function sentinelOptions(config: RedisConfig, sentinels: HostPort[], name: string): RedisOptions {
  return {
    sentinels,
    name,
    role: 'master',
    ...(config.sentinelUsername !== undefined && { sentinelUsername: config.sentinelUsername }),
    ...(config.sentinelPassword !== undefined && { sentinelPassword: config.sentinelPassword }),
    ...(config.tls && { enableTLSForSentinelMode: true, sentinelTLS: {} }),
    // Reconnect to the new master as soon as the sentinels announce it, rather
    // than when the old one's connection finally breaks.
    failoverDetector: true,
    sentinelRetryStrategy: retryStrategy,
    sentinelCommandTimeout: config.commandTimeoutMs,
  }
}

/** The command client of the configured deployment (not yet connected). */
export function createCommandClient(config: RedisConfig): CommandClient {
  const topology = config.topology
  if (topology.kind === 'cluster') {
    const options: ClusterOptions = {
      redisOptions: commandOptions(config),
      lazyConnect: true,
      enableOfflineQueue: false,
      // A command whose connection closed may have run: surface the error
      // (503, fate unknown) instead of resending it to another node.
      retryDelayOnFailover: 0,
      // CLUSTERDOWN and TRYAGAIN mean "not run": safe to retry, and the call's
      // own deadline (redis-broker.ts) still bounds the whole.
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      // Notice failovers and slot moves even when no command hits them (and
      // sooner when something looks wrong: refreshSlotsSoon).
      slotsRefreshInterval: SLOTS_REFRESH_MS,
      slotsRefreshTimeout: config.commandTimeoutMs,
      clusterRetryStrategy: retryStrategy,
      scaleReads: 'master',
    }
    const cluster = new Cluster(topology.nodes, options)
    // A node that refused or dropped a connection: a failover may be under way.
    cluster.on('node error', () => refreshSlotsSoon(cluster))
    return cluster
  }
  if (topology.kind === 'sentinel') {
    return new Redis({ ...commandOptions(config), ...sentinelOptions(config, topology.sentinels, topology.name) })
  }
  return new Redis(topology.url, commandOptions(config))
}

/**
 * Options of a subscriber connection. Single server and Sentinel: the
 * deployment itself; Cluster: one node (`node`), as the slot map names it.
 */
export function subscriberOptions(config: RedisConfig, node?: HostPort): RedisOptions & { url?: string } {
  const base: RedisOptions = {
    ...baseOptions(config, 'notify-subscriber'),
    autoResubscribe: false,
    // Subscribes are sent only while ready (subscriptions.ts), and a link
    // resubscribes itself on every ready; nothing should wait in a queue.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  }
  const topology = config.topology
  if (topology.kind === 'cluster') {
    if (node === undefined) throw new Error('a cluster subscriber needs its node')
    return { ...base, host: node.host, port: node.port }
  }
  if (topology.kind === 'sentinel') return { ...base, ...sentinelOptions(config, topology.sentinels, topology.name) }
  return { ...base, url: topology.url }
}

/**
 * ioredis 6 ends a Sentinel client for good (status 'end', no more retries)
 * when its failover detector fires while a reconnect is still asking a
 * sentinel for the master: the detector's disconnect makes that attempt fail
 * with "Connection is closed.". After a failover that would leave the instance
 * down until restarted, so a client that ends without its owner closing it is
 * started again.
 */
export function restartWhenEnded(client: CommandClient, closed: () => boolean): void {
  client.on('end', () => {
    if (closed()) return
    setTimeout(() => {
      if (!closed() && client.status === 'end') client.connect().catch(() => {})
    }, 100).unref()
  })
}

/** Opens a subscriber connection made from subscriberOptions. */
export function createSubscriber(options: RedisOptions & { url?: string }): Redis {
  const { url, ...rest } = options
  return url === undefined ? new Redis(rest) : new Redis(url, rest)
}

/**
 * Closes a client at shutdown: QUIT (Redis finishes what it has) within
 * `withinMs`, then the sockets either way. Unbounded, QUIT on a connection that
 * is reconnecting, or on a node that hangs, waits in the offline queue and
 * holds the drain until SHUTDOWN_TIMEOUT_MS ends it with exit 1. ioredis 6
 * (redis/ioredis#1362): quit() also leaves a Sentinel client's failover-detector
 * connections open (they keep the process alive and reconnect every minute);
 * disconnect() closes them.
 */
export async function closeClient(client: CommandClient, withinMs: number): Promise<void> {
  try {
    await deadline(client.quit(), withinMs, 'QUIT')
  } catch {
    // Closed below either way.
  }
  client.disconnect()
}
