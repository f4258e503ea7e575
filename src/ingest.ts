// Live events in, deliveries out: parse once, frame once, route. Bad input is
// counted and logged (rate-limited) and never reaches a client.
import type { LiveSink } from './broker/broker.js'
import type { DropReason } from './event.js'
import { parseMessage, tooLarge } from './event.js'
import type { Position } from './history/event-id.js'
import { isClassicCopy, isEnvelope, parseEnvelope } from './history/envelope.js'
import type { LogLimiter } from './log-limiter.js'
import type { Hub } from './sse/hub.js'

export interface IngestStats {
  /** Messages taken off the channel (Redis), valid or not. */
  received: number
  dropped: Record<DropReason, number>
  /** Classic-channel copies of events this instance gets on the recipient's own channel (PUBLISH_CLASSIC_COPY), skipped. */
  copies: number
}

/** `message` takes a raw channel message: a plain event, or one stored by redis/publish.lua. */
export interface Ingest extends LiveSink {
  readonly stats: IngestStats
}

export function createIngest(hub: Hub, maxEventBytes: number, logs: LogLimiter): Ingest {
  const stats: IngestStats = {
    received: 0,
    dropped: { too_large: 0, not_json: 0, not_object: 0, bad_recipient: 0, bad_type: 0, reserved_type: 0, bad_envelope: 0 },
    copies: 0,
  }
  const drop = (reason: DropReason, length: number): void => {
    stats.dropped[reason]++
    // The message itself is not logged: it may be large or carry personal data.
    logs.write('warn', `drop:${reason}`, { reason, length }, 'dropped a channel message')
  }
  const stored = (recipient: string, position: Position | undefined, frame: Buffer): void => {
    if (position === undefined) hub.deliver([recipient], frame)
    else hub.deliverStored(recipient, { position, frame })
  }
  const message = (raw: string, own: boolean): void => {
    stats.received++
    if (isEnvelope(raw)) {
      if (!own && isClassicCopy(raw)) {
        stats.copies++
        return
      }
      // The script's envelope adds a few dozen bytes to the event; the bound is on the whole.
      if (tooLarge(raw, maxEventBytes + 1024)) return drop('too_large', raw.length)
      const parsed = parseEnvelope(raw)
      if (!parsed.ok) return drop(parsed.reason, raw.length)
      return stored(parsed.recipient, parsed.position, parsed.frame)
    }
    const parsed = parseMessage(raw, maxEventBytes)
    if (!parsed.ok) return drop(parsed.reason, raw.length)
    hub.deliver(parsed.recipients, parsed.frame)
  }
  return {
    stats,
    message,
    // Already counted where it was published (the embedded broker has no channel).
    stored,
  }
}
