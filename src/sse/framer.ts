// The bytes of each kind of frame a stream sends, in the format the client
// asked for (accept.ts); chosen once per stream. Pure: the constant frames are
// built once per hub and shared by all its streams.
import { formatEventId, type Position, recipientTag } from '../history/event-id.js'
import type { Format } from './accept.js'
import { encodeComment, encodeEvent, encodeRetry } from './frame.js'
import { encodeNdjsonEvent, encodeNdjsonRetry, NDJSON_HEARTBEAT, ndjsonFromSse } from './ndjson.js'

export interface Framer {
  readonly format: Format
  readonly contentType: string
  /** The first bytes, right after the head: the reconnection delay (SSE adds a `: connected` comment). */
  readonly hello: Buffer
  readonly heartbeat: Buffer
  /** The last frame of a stream the service ends (shutdown, history unreachable), and all of a turned-away one. */
  readonly retry: Buffer
  readonly resync: Buffer
  /** The last frame of a stream whose token expired. */
  readonly authExpired: Buffer
  /**
   * Where a stream stands, when it has no id of its own there (a first visit, a
   * resync): the `id:` updates a plain EventSource's last event id, sent back as
   * Last-Event-ID when it reconnects; the event name lets the client helper,
   * which reconnects by itself, learn it too. Nobody else listens for it.
   */
  position(position: Position, userId: string): Buffer
  /** An event as framed for SSE (once, for every stream), in this format. */
  event(sse: Buffer): Buffer
}

function positionId(position: Position, userId: string): string {
  return formatEventId(position, recipientTag(userId))
}

export function sseFramer(retryMs: number): Framer {
  return {
    format: 'sse',
    contentType: 'text/event-stream; charset=utf-8',
    hello: Buffer.from(encodeRetry(retryMs) + encodeComment('connected')),
    heartbeat: Buffer.from(encodeComment()),
    retry: Buffer.from(encodeRetry(retryMs)),
    resync: Buffer.from(encodeEvent({ event: 'resync', data: '{}' })),
    authExpired: Buffer.from(encodeEvent({ event: 'auth-expired', data: '{}' })),
    position: (position, userId) => Buffer.from(encodeEvent({ event: 'position', id: positionId(position, userId), data: '{}' })),
    event: (sse) => sse,
  }
}

export function ndjsonFramer(retryMs: number): Framer {
  // An event goes to all its recipient's streams one after the other: the last
  // translation is kept, so it is made once, not once per stream.
  let lastSse: Buffer | undefined
  let lastLine: Buffer = Buffer.alloc(0)
  const retry = Buffer.from(encodeNdjsonRetry(retryMs))
  return {
    format: 'ndjson',
    contentType: 'application/x-ndjson; charset=utf-8',
    // The retry line says the stream is up; NDJSON has no comments, so nothing stands for `: connected`.
    hello: retry,
    heartbeat: Buffer.from(NDJSON_HEARTBEAT),
    retry,
    resync: Buffer.from(encodeNdjsonEvent('resync')),
    authExpired: Buffer.from(encodeNdjsonEvent('auth-expired')),
    position: (position, userId) => Buffer.from(encodeNdjsonEvent('position', positionId(position, userId))),
    event: (sse) => {
      if (sse !== lastSse) {
        lastLine = Buffer.from(ndjsonFromSse(sse.toString('utf8')))
        lastSse = sse
      }
      return lastLine
    },
  }
}

export function framers(retryMs: number): Record<Format, Framer> {
  return { sse: sseFramer(retryMs), ndjson: ndjsonFramer(retryMs) }
}
