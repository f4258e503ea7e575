// POST /publish: events from backends that would rather speak HTTP than Redis.
// Served only when PUBLISH_TOKEN is set. The token is checked before the body is
// read; the whole batch is validated before anything is published; 202 means
// stored (when history is on) and published.
import type { FastifyInstance, FastifyReply } from 'fastify'
import { errors, isEventError } from '../errors.js'
import type { Publisher } from '../publish/publisher.js'
import { bearerCheck } from './bearer.js'

export interface PublishRouteDeps {
  token: string
  maxBytes: number
  publisher: Publisher
}

export async function publishRoute(app: FastifyInstance, deps: PublishRouteDeps): Promise<void> {
  const authorized = bearerCheck(deps.token)

  // JSON only (this plugin's scope): a text/plain body would reach the route as a
  // string and be refused as "not an object"; 415 says what is actually wrong.
  app.removeContentTypeParser('text/plain')

  app.post(
    '/publish',
    {
      bodyLimit: deps.maxBytes,
      onRequest: async (request) => {
        if (!authorized(request.headers.authorization)) throw errors.publishUnauthorized()
      },
    },
    async (request, reply) => {
      let published
      try {
        published = await deps.publisher.publish(request.body as never)
      } catch (err) {
        if (isEventError(err)) return sendEventError(reply, err)
        request.log.warn({ err: { message: (err as Error).message } }, 'publish failed: history store unreachable')
        throw errors.publishUnavailable()
      }
      return reply.code(202).send({ published })
    },
  )
}

// The catalog error plus which event and field: Fastify's own error body has no room for them.
function sendEventError(reply: FastifyReply, err: import('../errors.js').EventError): FastifyReply {
  return reply.code(err.statusCode).send({
    statusCode: err.statusCode,
    code: err.code,
    error: err.statusCode === 413 ? 'Payload Too Large' : 'Bad Request',
    message: err.message,
    ...err.details,
  })
}
