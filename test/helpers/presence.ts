// Asking an instance who is online (GET /presence/<user>, POST /presence), and
// waiting, without sleeps, until a closed stream's channel is gone from Redis.
import type { Redis } from 'ioredis'
import { liveChannel } from '../../src/broker/keys.js'
import type { RedisBroker } from '../../src/broker/redis-broker.js'
import type { Built } from './app.js'
import { hubSize } from './hub.js'
import { waitFor } from './wait.js'

export const PRESENCE_TOKEN = 'publish-token-0123456789abcdef'

export interface PresenceReply {
  status: number
  headers: Headers
  json: Record<string, unknown>
}

export interface Online {
  user_id: string
  online: boolean | null
  instances: number | null
}

/** GET /presence/<user> (the id URL-encoded); `authorization` null: none. */
export async function getPresence(s: Built, user: string, authorization: string | null = `Bearer ${PRESENCE_TOKEN}`): Promise<PresenceReply> {
  const headers: Record<string, string> = authorization === null ? {} : { authorization }
  const res = await fetch(`${s.base}/presence/${encodeURIComponent(user)}`, { headers })
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> }
}

/** POST /presence with `body` as JSON (or `raw`). */
export async function postPresence(
  s: Built,
  body: unknown,
  opts: { authorization?: string | null; raw?: string; contentType?: string } = {},
): Promise<PresenceReply> {
  const authorization = opts.authorization === undefined ? `Bearer ${PRESENCE_TOKEN}` : opts.authorization
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/json' }
  if (authorization !== null) headers.authorization = authorization
  const res = await fetch(`${s.base}/presence`, { method: 'POST', headers, body: opts.raw ?? JSON.stringify(body) })
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> }
}

/** The batch answer of one instance, as `user: instances` (null: unknown), failing on anything but 200. */
export async function presenceOf(s: Built, users: string[]): Promise<Record<string, number | null>> {
  const res = await postPresence(s, users)
  if (res.status !== 200) throw new Error(`POST /presence: ${res.status} ${JSON.stringify(res.json)}`)
  const answers = res.json.presence as Online[]
  const out: Record<string, number | null> = {}
  for (const a of answers) {
    // `online` must agree with the count, whatever it is.
    if (a.online !== (a.instances === null ? null : a.instances > 0)) throw new Error(`inconsistent answer ${JSON.stringify(a)}`)
    out[a.user_id] = a.instances
  }
  return out
}

/**
 * After a stream of `s` closed: resolves once the instance holds `streams`
 * streams and `channels` user channels (subscriptions.ts drops a channel in a
 * later pass) and Redis (`node`: the master of the user's slot) counts
 * `subscribers` on the user's channel. The SUNSUBSCRIBE travels on the
 * instance's subscriber connection, not the one asking, so Redis's count is
 * polled, bounded.
 */
export async function closed(s: Built, node: Redis, user: string, want: { streams: number; channels: number; subscribers: number }): Promise<void> {
  await hubSize(s.app.notifier.hub, want.streams)
  const subs = (s.app.notifier.broker as RedisBroker).subscriptions
  while (subs.channels !== want.channels) await new Promise((resolve) => setImmediate(resolve))
  await waitFor(
    async (reason) => {
      const reply = (await node.call('PUBSUB', 'SHARDNUMSUB', liveChannel('notifications', user))) as unknown[]
      reason(`${reply[1]} subscribers`)
      return Number(reply[1]) === want.subscribers
    },
    { timeoutMs: 5000, what: `${want.subscribers} subscribers on ${user}'s channel` },
  )
}
