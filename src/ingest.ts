// Channel messages in, deliveries out: parse once, frame once, route. Bad input
// is counted and logged (rate-limited) and never reaches a client.
import type { DropReason } from './event.js'
import { parseMessage } from './event.js'
import type { LogLimiter } from './log-limiter.js'
import type { Hub } from './sse/hub.js'

export interface IngestStats {
  received: number
  dropped: Record<DropReason, number>
}

export interface Ingest {
  readonly stats: IngestStats
  handle(message: string): void
}

export function createIngest(hub: Hub, maxEventBytes: number, logs: LogLimiter): Ingest {
  const stats: IngestStats = {
    received: 0,
    dropped: { too_large: 0, not_json: 0, not_object: 0, bad_recipient: 0, bad_type: 0, reserved_type: 0 },
  }
  return {
    stats,
    handle(message: string): void {
      stats.received++
      const parsed = parseMessage(message, maxEventBytes)
      if (!parsed.ok) {
        stats.dropped[parsed.reason]++
        // The message itself is not logged: it may be large or carry personal data.
        logs.write('warn', `drop:${parsed.reason}`, { reason: parsed.reason, length: message.length }, 'dropped a channel message')
        return
      }
      hub.deliver(parsed.recipients, parsed.frame)
    },
  }
}
