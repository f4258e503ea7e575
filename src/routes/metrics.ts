// GET /metrics: Prometheus text format. Open unless METRICS_TOKEN is set.
import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { errors } from '../errors.js'
import { bearerCheck } from './bearer.js'

export interface MetricsRouteDeps {
  registry: Registry
  /** Undefined: no token required. */
  token: string | undefined
}

export async function metricsRoute(app: FastifyInstance, { registry, token }: MetricsRouteDeps): Promise<void> {
  const authorized = token === undefined ? undefined : bearerCheck(token)
  app.get(
    '/metrics',
    {
      onRequest: async (request) => {
        if (authorized !== undefined && !authorized(request.headers.authorization)) throw errors.metricsUnauthorized()
      },
    },
    async (_request, reply) => {
      const body = await registry.metrics()
      return reply.type(registry.contentType).send(body)
    },
  )
}
