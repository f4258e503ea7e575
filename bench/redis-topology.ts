// The Redis a benchmark runs on: one redis-server, or a local Redis Cluster of
// 3 masters and 3 replicas (test/helpers/cluster.ts: redis-cli --cluster create
// on free loopback ports). Says how the service reaches it (its environment),
// which processes are Redis (for their CPU from /proc), and what Redis ran
// (INFO commandstats, summed over the masters). Stopped by `stop()`, at exit,
// and by the kernel if the bench dies (setpriv --pdeathsig).
import { Redis } from 'ioredis'
import { startCluster } from '../test/helpers/cluster.js'
import { atSignal, killAtExit, startRedis } from './lib.js'

export type RedisKind = 'single' | 'cluster'

export interface Topology {
  kind: RedisKind
  /** REDIS_URL or REDIS_CLUSTER_NODES, for the service. */
  env: Record<string, string>
  /** Where a publisher connects: a URL (single) or the seed list (cluster). */
  url?: string
  seeds?: { host: string; port: number }[]
  /** Every redis-server process (the Cluster's replicas too: they apply every write). */
  pids(): number[]
  /** INFO commandstats summed over the masters: command -> calls and microseconds. */
  commandStats(): Promise<CommandStats>
  /** FLUSHALL on every master. */
  flush(): Promise<void>
  stop(): Promise<void>
}

export type CommandStats = Map<string, { calls: number; usec: number }>

/** Redis commands worth reporting: what a connect and a publish cost there. */
export const WATCHED = ['ssubscribe', 'sunsubscribe', 'subscribe', 'xrange', 'xrevrange', 'evalsha', 'publish', 'spublish', 'xadd']

export async function startTopology(kind: RedisKind, extraArgs: string[] = []): Promise<Topology> {
  return kind === 'cluster' ? startBenchCluster(extraArgs) : startSingle(extraArgs)
}

async function startSingle(extraArgs: string[]): Promise<Topology> {
  const redis = await startRedis(extraArgs)
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  admin.on('error', () => {})
  return {
    kind: 'single',
    env: { REDIS_URL: redis.url },
    url: redis.url,
    pids: () => [redis.pid],
    commandStats: async () => parseCommandStats(await admin.info('commandstats')),
    flush: async () => void (await admin.flushall()),
    stop: async () => {
      admin.disconnect()
      try {
        process.kill(redis.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    },
  }
}

async function startBenchCluster(extraArgs: string[]): Promise<Topology> {
  const teardowns: (() => unknown)[] = []
  const teardown = async () => {
    for (const fn of teardowns.splice(0).reverse()) await fn()
  }
  const unregister = atSignal(teardown)
  try {
    // A node timeout of 5 s (the helper's default is 1 s, for quick failover
    // tests): two shared cores under a connect burst must not look like a dead master.
    const cluster = await startCluster({ teardown: (fn) => teardowns.push(fn) }, { nodeTimeoutMs: 5000, args: extraArgs })
    for (const n of cluster.nodes) killAtExit(n.pid)
    const masters = () => cluster.nodes.filter((n) => n.role === 'master').map((n) => cluster.node(n.port))
    return {
      kind: 'cluster',
      env: { REDIS_CLUSTER_NODES: cluster.seeds },
      seeds: cluster.seedList,
      pids: () => cluster.nodes.map((n) => n.pid),
      commandStats: async () => {
        const sum: CommandStats = new Map()
        for (const text of await Promise.all(masters().map((m) => m.info('commandstats')))) {
          for (const [cmd, s] of parseCommandStats(text)) {
            const had = sum.get(cmd) ?? { calls: 0, usec: 0 }
            sum.set(cmd, { calls: had.calls + s.calls, usec: had.usec + s.usec })
          }
        }
        return sum
      },
      flush: async () => void (await Promise.all(masters().map((m) => m.flushall()))),
      stop: async () => {
        unregister()
        await teardown()
      },
    }
  } catch (err) {
    unregister()
    await teardown()
    throw err
  }
}

/** `cmdstat_ssubscribe:calls=12,usec=3456,...` lines -> a map. */
export function parseCommandStats(text: string): CommandStats {
  const out: CommandStats = new Map()
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) })
  }
  return out
}

/** What ran between two snapshots, for the commands named (all when none are). */
export function commandsBetween(before: CommandStats, after: CommandStats, only?: string[]): Record<string, { calls: number; usec: number }> {
  const out: Record<string, { calls: number; usec: number }> = {}
  for (const [cmd, s] of after) {
    if (only !== undefined && !only.includes(cmd)) continue
    const b = before.get(cmd) ?? { calls: 0, usec: 0 }
    if (s.calls - b.calls > 0) out[cmd] = { calls: s.calls - b.calls, usec: s.usec - b.usec }
  }
  return out
}
