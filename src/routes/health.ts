// Liveness and readiness probes.
import type { FastifyInstance } from 'fastify'
import type { Broker } from '../broker/broker.js'

export interface HealthDeps {
  /** Up while live delivery and history both work. */
  broker: Pick<Broker, 'up' | 'kind'>
  /** True once shutdown has begun: the load balancer should drain us. */
  closing: () => boolean
}

export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  // The process runs and answers HTTP; nothing else is checked on purpose, so a
  // Redis outage does not get healthy instances restarted.
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const { up, kind } = deps.broker
    const ready = up && !deps.closing()
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not ready',
      broker: kind,
      ...(kind === 'redis' && { redis: up ? 'up' : 'down' }),
      closing: deps.closing(),
    })
  })
}
