// build(t, env): the real app on a free port, with a real Redis (started here
// unless one is given) and, in upstream mode, a real auth upstream.
import { once } from 'node:events'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { type AppDeps, buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { loggerOptions } from '../../src/logger.js'
import { startRedis, type TestRedis } from './redis.js'
import { startUpstream, type TestUpstream } from './upstream.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Built {
  app: FastifyInstance
  /** http://127.0.0.1:<port> */
  base: string
  redis: TestRedis
  upstream: TestUpstream
  /** Every log line the app wrote, parsed. */
  logs: Record<string, unknown>[]
  /** Raw log output, to check that secrets never appear. */
  rawLogs(): string
  /** PUBLISH on the app's channel; objects are JSON-encoded. */
  publish(event: unknown): Promise<number>
}

export interface BuildOptions {
  env?: Record<string, string>
  deps?: AppDeps
  redis?: TestRedis
  /** Wait for the Redis subscription before returning (default true). */
  waitForRedis?: boolean
}

export async function build(t: Teardown, opts: BuildOptions = {}): Promise<Built> {
  const redis = opts.redis ?? (await startRedis(t))
  const upstream = await startUpstream(t)
  const config = loadConfig({
    REDIS_URL: redis.url,
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: upstream.url,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'debug',
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
  const up = once(app.notifier.subscriber, 'up')
  await app.listen({ host: config.host, port: config.port })
  if (opts.waitForRedis !== false) await up
  const { port } = app.server.address() as { port: number }
  const publisher = redis.client()
  return {
    app,
    base: `http://127.0.0.1:${port}`,
    redis,
    upstream,
    logs,
    rawLogs: () => raw,
    publish: (event) => publisher.publish(config.channel, typeof event === 'string' ? event : JSON.stringify(event)),
  }
}
