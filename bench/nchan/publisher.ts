// Publishing to Nchan over HTTP: POST /pub/<user> with the event's JSON, the
// body the other targets deliver, and its `type` as X-EventSource-Event (the
// `event:` line the service writes too). An event naming many users
// (recipient_ids, a broadcast) goes out with Nchan's multi-channel publishing,
// one POST per 255 users (its limit), the body being the event without the list,
// as the service writes it on each stream: 40 POSTs for 10,000 users instead of
// 10,000, which is Nchan's own way to reach many channels and its cheapest.
// A user's events always take the same kept-alive connection, so they reach
// Nchan in the order they were sent, as PUBLISHes on one Redis connection do.
import { Client } from 'undici'
import type { Sender } from '../load/publisher.js'

/** Channels one POST may name: NCHAN_MULTITAG_MAX (a longer list overflows Nchan's id array). */
export const MAX_CHANNELS_PER_POST = 255
/** Kept-alive connections to the publisher port (nginx's one worker takes them in turn). */
const CONNECTIONS = 8

export class NchanPublisher {
  readonly #clients: Client[]

  constructor(port: number) {
    this.#clients = Array.from({ length: CONNECTIONS }, () => new Client(`http://127.0.0.1:${port}`))
  }

  /**
   * Publishes `body` to every channel of `channels` (at most 255). Resolves
   * with the message's id as Nchan sends it on the stream (`<time>:<tag>`),
   * for one channel; Nchan reports none for several.
   */
  async publish(channels: string[], body: string, type?: string): Promise<string | undefined> {
    if (channels.length === 0 || channels.length > MAX_CHANNELS_PER_POST) {
      throw new RangeError(`one POST publishes to 1 to ${MAX_CHANNELS_PER_POST} channels (got ${channels.length})`)
    }
    const res = await this.#clientFor(channels[0] as string).request({
      method: 'POST',
      path: `/pub/${channels.map(encodeURIComponent).join(',')}`,
      headers: { accept: 'text/json', ...(type !== undefined && { 'x-eventsource-event': type }) },
      body,
    })
    const text = await res.body.text()
    // 201: delivered to a subscriber; 202: queued with none.
    if (res.statusCode !== 201 && res.statusCode !== 202) throw new Error(`POST /pub: ${res.statusCode} ${text.slice(0, 200)}`)
    return (JSON.parse(text) as { last_message_id?: string }).last_message_id || undefined
  }

  async close(): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.close()))
  }

  #clientFor(channel: string): Client {
    let h = 0
    for (let i = 0; i < channel.length; i++) h = (h * 31 + channel.charCodeAt(i)) >>> 0
    return this.#clients[h % this.#clients.length] as Client
  }
}

/** The harness's Sender over Nchan's publisher: one event to its recipient, or to each of its recipient_ids. */
export function nchanSender(pub: NchanPublisher): Sender {
  const failed: Sender['failed'] = { count: 0 }
  const pending = new Set<Promise<unknown>>()
  const post = (channels: string[], body: string, type: string | undefined) => {
    const p = pub
      .publish(channels, body, type)
      .catch((err: Error) => {
        failed.count++
        failed.first ??= err.message
      })
      .finally(() => pending.delete(p))
    pending.add(p)
  }
  return {
    failed,
    send: (event) => {
      const { recipient_ids: ids, ...rest } = event
      const type = typeof event.type === 'string' ? event.type : undefined
      if (!Array.isArray(ids)) return post([String(event.recipient_id)], JSON.stringify(event), type)
      const body = JSON.stringify(rest)
      for (let i = 0; i < ids.length; i += MAX_CHANNELS_PER_POST) {
        post(ids.slice(i, i + MAX_CHANNELS_PER_POST).map(String), body, type)
      }
    },
    flush: async () => void (await Promise.all(pending)),
  }
}
