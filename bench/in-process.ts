// The app in the benchmark's own process (bench:churn, bench:memory). Kept out
// of lib.ts so that the load workers, which import lib.ts, do not load the app.
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { CAPACITY, startRedis, startUpstream } from './lib.js'

/**
 * The app in this process (for process.memoryUsage() and forced GCs), on a
 * fresh redis-server and auth upstream, upstream auth with the cache off: every
 * connect costs an upstream call, and no cached answer is counted as a stream's.
 */
export async function startInProcess(): Promise<{ app: FastifyInstance; port: number }> {
  const redis = await startRedis()
  const upstream = await startUpstream()
  const config = loadConfig({
    REDIS_URL: redis.url,
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: upstream,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...CAPACITY,
    AUTH_CACHE_TTL_MS: '0',
  })
  const app = await buildApp(config)
  await app.listen({ host: config.host, port: config.port })
  return { app, port: (app.server.address() as { port: number }).port }
}

