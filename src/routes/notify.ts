// GET /notify: authenticate, then hand the response to the hub as an event stream.
import type { FastifyInstance } from 'fastify'
import type { Authenticate } from '../auth/authenticate.js'
import type { Hub } from '../sse/hub.js'
import type { Resumer } from '../sse/resume.js'

export interface NotifyDeps {
  authenticate: Authenticate
  hub: Hub
  resumer: Resumer
}

/**
 * Where the client stands. The header is what EventSource sends when it
 * reconnects; the query parameter is for a fresh page that stored the last id.
 * The header wins: it is newer than anything the page was loaded with.
 */
function lastEventId(headers: Record<string, unknown>, query: unknown): string | undefined {
  const header = headers['last-event-id']
  if (typeof header === 'string' && header !== '') return header
  const param = (query as Record<string, unknown> | undefined)?.lastEventId
  if (param === undefined || param === '') return undefined
  // A repeated parameter arrives as an array: malformed, hence a resync.
  return typeof param === 'string' ? param : ''
}

export async function notifyRoute(app: FastifyInstance, { authenticate, hub, resumer }: NotifyDeps): Promise<void> {
  // No HEAD twin: a HEAD request must not open a stream.
  app.get('/notify', { exposeHeadRoute: false }, async (request, reply) => {
    if (hub.closing) {
      // Draining: no need to check credentials to say "come back later".
      reply.hijack()
      hub.turnAway(reply.raw, reply.getHeaders() as Record<string, string>)
      return reply
    }
    // Throws 401 or 503 catalog errors, answered as JSON by Fastify.
    const principal = await authenticate(request)
    reply.hijack()
    const res = reply.raw
    // The client may have gone while we were checking its token.
    if (res.destroyed || res.socket === null || res.socket.destroyed) {
      res.destroy()
      return reply
    }
    // The stream now belongs to the hub, which ends it; the socket needs no timeout.
    res.socket.setTimeout(0)
    const stream = hub.open(res, principal.userId, reply.getHeaders() as Record<string, string>, principal.expiresAt)
    if (stream === undefined) return reply
    request.log.debug({ userId: principal.userId }, 'stream opened')
    resumer.join(stream, lastEventId(request.headers, request.query))
    return reply
  })
}
