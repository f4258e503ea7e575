// The Redis part of the configuration: which deployment (one server, Sentinel,
// Cluster), its credentials, and the bounds and guarantees of every call. The
// variables are declared here and spread into config.ts's one schema, so the
// environment is still read and validated in one place.
import { Type, type Static } from '@sinclair/typebox'
import { ConfigError } from './config-error.js'

const HostList = () => Type.Optional(Type.String({ minLength: 1 }))

export const RedisEnv = {
  /** One Redis server (redis:// or rediss://). Unset (with the two below unset too): the embedded broker, one instance only. */
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  /** Redis Sentinel: comma list of sentinels, host:port. Needs REDIS_SENTINEL_NAME. */
  REDIS_SENTINELS: HostList(),
  /** Redis Sentinel: the name of the master group the sentinels monitor. */
  REDIS_SENTINEL_NAME: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  /** Redis Cluster: comma list of seed nodes, host:port (any few nodes; the rest is discovered). */
  REDIS_CLUSTER_NODES: HostList(),
  /** Sentinel and Cluster: ACL user of the Redis nodes. (With REDIS_URL, put it in the URL.) */
  REDIS_USERNAME: Type.Optional(Type.String({ minLength: 1 })),
  /** Sentinel and Cluster: password of the Redis nodes. With REDIS_URL: used when the URL carries none. */
  REDIS_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  /** Sentinel and Cluster: TLS to the Redis nodes (and to the sentinels). With REDIS_URL, use rediss://. Default false. */
  REDIS_TLS: Type.Boolean({ default: false }),
  /** Sentinel: ACL user of the sentinels themselves, when they require one. */
  REDIS_SENTINEL_USERNAME: Type.Optional(Type.String({ minLength: 1 })),
  /** Sentinel: password of the sentinels themselves (`requirepass` in sentinel.conf), when they require one. */
  REDIS_SENTINEL_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * Bound on every Redis call, in ms: a command without an answer fails after
   * it, and a connection that has sent a command and heard nothing for that
   * long is dropped and reconnected (a hung or partitioned node keeps its TCP
   * connections open). Default 2000.
   */
  REDIS_COMMAND_TIMEOUT_MS: Type.Integer({ default: 2000, minimum: 100, maximum: 60_000 }),
  /**
   * POST /publish (and the in-process publisher) waits until this many replicas
   * have the event (Redis WAIT) before answering 202. 0: answer once the master
   * has it. Default 0.
   */
  PUBLISH_WAIT_REPLICAS: Type.Integer({ default: 0, minimum: 0, maximum: 16 }),
  /** With PUBLISH_WAIT_REPLICAS: how long to wait for them, in ms; short of them, /publish answers 503. Default 1000. */
  PUBLISH_WAIT_TIMEOUT_MS: Type.Integer({ default: 1000, minimum: 1, maximum: 60_000 }),
  /**
   * Rolling upgrade from a version without per-user routing: also publish each
   * stored event on NOTIFY_CHANNEL, where instances of that version listen.
   * Turn it off once no such instance runs. Default false.
   */
  PUBLISH_CLASSIC_COPY: Type.Boolean({ default: false }),
}

const RedisEnvSchema = Type.Object(RedisEnv)
type RedisEnvValues = Static<typeof RedisEnvSchema>

export interface HostPort {
  host: string
  port: number
}

export type RedisTopology =
  | { kind: 'single'; url: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string }
  | { kind: 'cluster'; nodes: HostPort[] }

export interface RedisConfig {
  topology: RedisTopology
  /** Sentinel and Cluster (and REDIS_URL without a password of its own). */
  username?: string
  password?: string
  tls: boolean
  sentinelUsername?: string
  sentinelPassword?: string
  commandTimeoutMs: number
  waitReplicas: number
  waitTimeoutMs: number
  classicCopy: boolean
}

/** The Redis deployment the environment names; undefined when it names none (embedded broker). */
export function redisConfig(env: RedisEnvValues): RedisConfig | undefined {
  const chosen = (['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).filter((k) => env[k] !== undefined)
  if (chosen.length > 1) {
    throw new ConfigError(`set one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES, not ${chosen.join(' and ')}`)
  }
  const topology = redisTopology(env)
  if (topology === undefined) {
    const stray: string[] = (['REDIS_SENTINEL_NAME', 'REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_SENTINEL_USERNAME', 'REDIS_SENTINEL_PASSWORD'] as const).filter(
      (k) => env[k] !== undefined,
    )
    if (env.PUBLISH_WAIT_REPLICAS > 0) stray.push('PUBLISH_WAIT_REPLICAS')
    if (env.PUBLISH_CLASSIC_COPY) stray.push('PUBLISH_CLASSIC_COPY')
    if (stray.length > 0) throw new ConfigError(`${stray.join(', ')} set without REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES`)
    return undefined
  }
  if (topology.kind === 'single') {
    const url = new URL(topology.url)
    if (env.REDIS_TLS) throw new ConfigError('REDIS_TLS is for Sentinel and Cluster; with REDIS_URL use rediss://')
    if (env.REDIS_USERNAME !== undefined) throw new ConfigError('REDIS_USERNAME is for Sentinel and Cluster; with REDIS_URL put the user in the URL')
    if (env.REDIS_PASSWORD !== undefined && url.password !== '') {
      throw new ConfigError('REDIS_PASSWORD and a password in REDIS_URL: give one of them')
    }
  }
  // WAIT blocks its connection; past the call bound the connection would be dropped as hung.
  if (env.PUBLISH_WAIT_REPLICAS > 0 && env.PUBLISH_WAIT_TIMEOUT_MS >= env.REDIS_COMMAND_TIMEOUT_MS) {
    throw new ConfigError('PUBLISH_WAIT_TIMEOUT_MS must be below REDIS_COMMAND_TIMEOUT_MS (the bound on every Redis call)')
  }
  if (topology.kind !== 'sentinel') {
    const stray = (['REDIS_SENTINEL_USERNAME', 'REDIS_SENTINEL_PASSWORD'] as const).filter((k) => env[k] !== undefined)
    if (stray.length > 0) throw new ConfigError(`${stray.join(', ')} only apply with REDIS_SENTINELS`)
  }
  return {
    topology,
    ...(env.REDIS_USERNAME !== undefined && { username: env.REDIS_USERNAME }),
    ...(env.REDIS_PASSWORD !== undefined && { password: env.REDIS_PASSWORD }),
    tls: env.REDIS_TLS,
    ...(env.REDIS_SENTINEL_USERNAME !== undefined && { sentinelUsername: env.REDIS_SENTINEL_USERNAME }),
    ...(env.REDIS_SENTINEL_PASSWORD !== undefined && { sentinelPassword: env.REDIS_SENTINEL_PASSWORD }),
    commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
    waitReplicas: env.PUBLISH_WAIT_REPLICAS,
    waitTimeoutMs: env.PUBLISH_WAIT_TIMEOUT_MS,
    classicCopy: env.PUBLISH_CLASSIC_COPY,
  }
}

function redisTopology(env: RedisEnvValues): RedisTopology | undefined {
  if (env.REDIS_URL !== undefined) {
    if (env.REDIS_SENTINEL_NAME !== undefined) throw new ConfigError('REDIS_SENTINEL_NAME needs REDIS_SENTINELS, not REDIS_URL')
    return { kind: 'single', url: env.REDIS_URL }
  }
  if (env.REDIS_SENTINELS !== undefined) {
    if (env.REDIS_SENTINEL_NAME === undefined) throw new ConfigError('REDIS_SENTINELS needs REDIS_SENTINEL_NAME (the master group name)')
    return { kind: 'sentinel', sentinels: hostList('REDIS_SENTINELS', env.REDIS_SENTINELS), name: env.REDIS_SENTINEL_NAME }
  }
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    if (env.REDIS_SENTINEL_NAME !== undefined) throw new ConfigError('REDIS_SENTINEL_NAME needs REDIS_SENTINELS, not REDIS_CLUSTER_NODES')
    return { kind: 'cluster', nodes: hostList('REDIS_CLUSTER_NODES', env.REDIS_CLUSTER_NODES) }
  }
  if (env.REDIS_SENTINEL_NAME !== undefined) throw new ConfigError('REDIS_SENTINEL_NAME needs REDIS_SENTINELS')
  return undefined
}

/** `host:port,host:port`; IPv6 hosts in brackets (`[::1]:6379`). */
export function hostList(name: string, value: string): HostPort[] {
  const entries = value.split(',').map((e) => e.trim()).filter((e) => e !== '')
  if (entries.length === 0) throw new ConfigError(`${name} is empty`)
  if (entries.length > 64) throw new ConfigError(`${name}: at most 64 entries`)
  return entries.map((entry) => {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(entry)
    const port = Number(m?.[3])
    if (m === null || port < 1 || port > 65535) throw new ConfigError(`${name}: "${entry}" is not host:port`)
    return { host: (m[1] ?? m[2]) as string, port }
  })
}
