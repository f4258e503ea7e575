// build(t, env): the real app on a free port, with a real Redis (started here
// unless one is given) and, in upstream mode, a real auth upstream.
import { once } from 'node:events'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { type AppDeps, buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { loggerOptions } from '../../src/logger.js'
import type { NotifyEvent, Published } from '../../src/publish/publisher.js'
import { startRedis, type TestRedis } from './redis.js'
import { startUpstream, type TestUpstream } from './upstream.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Built {
  app: FastifyInstance
  /** http://127.0.0.1:<port> */
  base: string
  /** The Redis server (one redis-server only; throws in embedded mode and with a topology). */
  redis: TestRedis
  broker: 'redis' | 'embedded'
  upstream: TestUpstream
  /** Every log line the app wrote, parsed. */
  logs: Record<string, unknown>[]
  /** Raw log output, to check that secrets never appear. */
  rawLogs(): string
  /** PUBLISH on the app's channel; objects are JSON-encoded (Redis only). */
  publish(event: unknown): Promise<number>
  /** Store and publish through the app's own publisher (the script, or the embedded broker). */
  store(events: NotifyEvent | NotifyEvent[]): Promise<Published[]>
}

/** A Redis deployment other than one redis-server: Sentinel or Cluster (test/helpers/sentinel.ts, cluster.ts). */
export interface Topology {
  /** REDIS_SENTINELS + REDIS_SENTINEL_NAME, or REDIS_CLUSTER_NODES. */
  env: Record<string, string>
  /** A plain PUBLISH on the deployment (the seed contract). */
  publish(channel: string, message: string): Promise<unknown>
}

export interface BuildOptions {
  env?: Record<string, string>
  deps?: AppDeps
  redis?: TestRedis
  /** Sentinel or Cluster instead of one redis-server. */
  topology?: Topology
  /** Default 'redis': a real redis-server. 'embedded': REDIS_URL unset. */
  broker?: 'redis' | 'embedded'
  /** Wait for the Redis subscription before returning (default true). */
  waitForRedis?: boolean
}

export async function build(t: Teardown, opts: BuildOptions = {}): Promise<Built> {
  const embedded = opts.broker === 'embedded'
  const topology = opts.topology
  const redis = embedded || topology !== undefined ? undefined : (opts.redis ?? (await startRedis(t)))
  const upstream = await startUpstream(t)
  const config = loadConfig({
    ...(redis && { REDIS_URL: redis.url }),
    ...topology?.env,
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: upstream.url,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'debug',
    // Suites open many streams from 127.0.0.1 within a minute; test/limits.test.ts
    // turns the per-IP connect rate limit back on.
    CONNECT_RATE_PER_MIN: '0',
    ...opts.env,
  })
  let raw = ''
  const logs: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString()
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line))
      cb()
    },
  })
  const logger = pino(loggerOptions(config.logLevel), sink)
  const app = await buildApp(config, { logger, ...opts.deps })
  t.teardown(() => app.close())
  const up = once(app.notifier.broker, 'up')
  await app.listen({ host: config.host, port: config.port })
  if (opts.waitForRedis !== false) await up
  const { port } = app.server.address() as { port: number }
  const publisher = redis?.client()
  return {
    app,
    base: `http://127.0.0.1:${port}`,
    get redis(): TestRedis {
      if (redis === undefined) throw new Error('no single redis-server: this app runs the embedded broker or a topology')
      return redis
    },
    broker: embedded ? 'embedded' : 'redis',
    upstream,
    logs,
    rawLogs: () => raw,
    publish: async (event) => {
      const message = typeof event === 'string' ? event : JSON.stringify(event)
      if (topology !== undefined) return Number(await topology.publish(config.channel, message))
      if (publisher === undefined) throw new Error('no channel: this app runs the embedded broker')
      return publisher.publish(config.channel, message)
    },
    store: (events) => app.notifier.publisher.publish(events),
  }
}
