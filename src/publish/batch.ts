// A publish request, pure: validate every event of a batch before anything is
// published, and turn each (event, recipient) into one item for the broker.
// Throws a catalog error naming the offending event and field; on error, nothing
// of the batch is published.
import type { PublishItem } from '../broker/broker.js'
import { errors } from '../errors.js'
import { validateEvent } from '../event.js'
import { normalizeRecipient } from '../recipient.js'
import { readControls } from './controls.js'

export interface BatchLimits {
  /** Most events in one batch. */
  maxEvents: number
  /** Largest event, serialized, in bytes (the same bound as on the channel). */
  maxEventBytes: number
}

/** Which event and recipient each item is for, in the order of the items. */
export interface PreparedBatch {
  items: PublishItem[]
  owners: { event: number; recipient: string }[]
}

export function prepareBatch(body: unknown, limits: BatchLimits): PreparedBatch {
  const events = Array.isArray(body) ? body : [body]
  if (events.length === 0) throw errors.invalidEvent({ field: 'events' }, 'the batch is empty')
  if (events.length > limits.maxEvents) {
    throw errors.eventTooLarge({ field: 'events' }, `${events.length} events, at most ${limits.maxEvents} per batch`)
  }
  const batch: PreparedBatch = { items: [], owners: [] }
  events.forEach((event: unknown, index) => {
    const valid = validateEvent(event)
    if (!valid.ok) throw errors.invalidEvent({ event: index, field: valid.field }, valid.message)
    const checked = readControls(event as Record<string, unknown>)
    if (!checked.ok) throw errors.invalidEvent({ event: index, field: checked.field }, checked.message)
    for (const [recipient, data] of perRecipient(event as Record<string, unknown>, valid.recipients)) {
      const bytes = Buffer.byteLength(data)
      if (bytes > limits.maxEventBytes) {
        throw errors.eventTooLarge({ event: index, field: 'event' }, `${bytes} bytes serialized, at most ${limits.maxEventBytes}`)
      }
      batch.items.push({ event: index, recipient, type: valid.type, data, ...checked.controls })
      batch.owners.push({ event: index, recipient })
    }
  })
  return batch
}

// Each recipient's copy names that recipient only: the list of everyone an event
// went to is the publisher's business, not every recipient's.
function* perRecipient(event: Record<string, unknown>, recipients: string[]): Generator<[string, string]> {
  if (event.recipient_ids === undefined) {
    yield [recipients[0] as string, JSON.stringify(event)]
    return
  }
  const { recipient_ids: ids, ...rest } = event
  const seen = new Set<string>()
  for (const value of ids as unknown[]) {
    const recipient = normalizeRecipient(value) as string
    if (seen.has(recipient)) continue
    seen.add(recipient)
    yield [recipient, JSON.stringify({ recipient_id: value, ...rest })]
  }
}
