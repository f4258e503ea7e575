// Liveness and readiness probes.
import type { FastifyInstance } from 'fastify'

export interface HealthDeps {
  /** True while the Redis subscription is active. */
  subscribed: () => boolean
  /** True once shutdown has begun: the load balancer should drain us. */
  closing: () => boolean
}

export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  // The process runs and answers HTTP; nothing else is checked on purpose, so a
  // Redis outage does not get healthy instances restarted.
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const redis = deps.subscribed() ? 'up' : 'down'
    const ready = redis === 'up' && !deps.closing()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', redis, closing: deps.closing() })
  })
}
