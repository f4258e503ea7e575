// POST /publish: events from backends that would rather speak HTTP than Redis.
// Served only when PUBLISH_TOKEN is set. The token is checked before the body is
// read; the whole batch is validated before anything is published; 202 means
// stored (when history is on) and published (and, with PUBLISH_WAIT_REPLICAS,
// on that many replicas). An Idempotency-Key makes a retry safe.
import type { FastifyBaseLogger, FastifyInstance, FastifyReply } from 'fastify'
import { BrokerUnavailable, IdempotencyConflict, NotReplicated, OutcomeUnknown } from '../broker/broker.js'
import { type ClientError, errors, isClientError, isEventError } from '../errors.js'
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
      const key = idempotencyKey(request.headers['idempotency-key'])
      let published
      try {
        published = await deps.publisher.publish(request.body as never, key === undefined ? {} : { idempotencyKey: key })
      } catch (err) {
        if (isEventError(err)) return sendEventError(reply, err)
        throw publishFailure(err, request.log)
      }
      return reply.code(202).send({ published })
    },
  )
}

/**
 * The Idempotency-Key header (IETF draft "The Idempotency-Key HTTP Header
 * Field"): a Structured Fields string, so quoted; the bare form is accepted too.
 */
function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) throw errors.invalidIdempotencyKey()
  const quoted = /^"(.*)"$/.exec(header)
  return quoted === null ? header : (quoted[1] as string)
}

/** What a publisher is told, and whether a retry is safe. */
function publishFailure(err: unknown, log: FastifyBaseLogger): ClientError {
  if (isClientError(err)) return err
  const message = (err as Error).message
  if (err instanceof IdempotencyConflict) return errors.idempotencyConflict()
  if (err instanceof NotReplicated) {
    log.warn({ wanted: err.wanted, got: err.got }, 'publish not confirmed by enough replicas')
    return errors.publishNotReplicated(err.got, err.wanted)
  }
  if (err instanceof BrokerUnavailable) {
    log.warn({ err: { message } }, 'publish failed: history store unreachable')
    return errors.publishUnavailable()
  }
  log.warn({ err: { message } }, 'publish outcome unknown')
  return errors.publishOutcomeUnknown(err instanceof OutcomeUnknown ? message : 'error')
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
