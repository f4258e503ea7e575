// GET /presence/<user> and POST /presence: whether users have a stream open
// anywhere in the fleet right now, for publishers that fall back to e-mail or
// push otherwise. Served with POST /publish (PUBLISH_TOKEN, checked the same
// way, before the body is read). The broker answers (presence.ts for Redis);
// the same question gets the same answer whichever instance is asked.
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Broker, Presence } from '../broker/broker.js'
import { errors } from '../errors.js'
import { MAX_RECIPIENT_LENGTH, normalizeRecipient } from '../recipient.js'
import { bearerCheck } from './bearer.js'

export interface PresenceRouteDeps {
  token: string
  /** Most users in one POST /presence (PRESENCE_MAX_USERS). */
  maxUsers: number
  maxBytes: number
  broker: Pick<Broker, 'presence'>
}

/** One user's answer, as sent. */
export interface PresenceAnswer extends Presence {
  user_id: string
}

const RULE = `a user id is a string of 1 to ${MAX_RECIPIENT_LENGTH} characters not starting with "}", or a safe integer`

export async function presenceRoute(app: FastifyInstance, deps: PresenceRouteDeps): Promise<void> {
  const authorized = bearerCheck(deps.token)
  app.removeContentTypeParser('text/plain')
  app.addHook('onRequest', async (request) => {
    if (!authorized(request.headers.authorization)) throw errors.publishUnauthorized()
  })

  const ask = async (users: string[], log: FastifyBaseLogger): Promise<PresenceAnswer[]> => {
    const unique = [...new Set(users)]
    let answers: Presence[]
    try {
      answers = await deps.broker.presence(unique)
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'presence failed: Redis unreachable')
      throw errors.presenceUnavailable()
    }
    const byUser = new Map(unique.map((user, i) => [user, answers[i] as Presence]))
    return users.map((user) => ({ user_id: user, ...(byUser.get(user) as Presence) }))
  }

  // A wildcard, not a parameter: a user id may hold a `/` (sent as %2F or not)
  // and be longer than Fastify's bound on a parameter (100).
  app.get('/presence/*', async (request) => {
    const user = normalizeRecipient((request.params as { '*': string })['*'])
    if (user === undefined) throw errors.invalidUser(`the user id in the path: ${RULE}`)
    const [answer] = await ask([user], request.log)
    return answer
  })

  app.post('/presence', { bodyLimit: deps.maxBytes }, async (request) => {
    return { presence: await ask(usersOf(request.body, deps.maxUsers), request.log) }
  })
}

/** The body of POST /presence: a JSON array of user ids, as `recipient_ids` of an event. */
function usersOf(body: unknown, max: number): string[] {
  if (!Array.isArray(body)) throw errors.invalidUser('the body must be a JSON array of user ids')
  if (body.length > max) throw errors.tooManyUsers(body.length, max)
  return body.map((value: unknown, i) => {
    const user = normalizeRecipient(value)
    if (user === undefined) throw errors.invalidUser(`user ${i}: ${RULE}`)
    return user
  })
}
