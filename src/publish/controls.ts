// The two publish controls an event may carry, pure: `live_only` (delivered,
// not stored) and `collapse_key` (stored in place of the recipient's last
// stored event with the same key). They are fields of the event, so they stay
// in its `data:` like `type`; they mean something only where events are stored
// (POST /publish, createPublisher), not on a plain channel PUBLISH.
import type { PublishItem } from '../broker/broker.js'

/** A collapse key: what redis/publish.lua accepts as ARGV[11]. */
export const COLLAPSE_KEY = /^[A-Za-z0-9_.:-]{1,128}$/

export type Controls = Pick<PublishItem, 'liveOnly' | 'collapseKey'>

export type ControlsCheck = { ok: true; controls: Controls } | { ok: false; field: 'live_only' | 'collapse_key'; message: string }

export function readControls(event: Record<string, unknown>): ControlsCheck {
  const { live_only: live, collapse_key: key } = event
  if (live !== undefined && typeof live !== 'boolean') return { ok: false, field: 'live_only', message: 'must be true or false' }
  if (key !== undefined && (typeof key !== 'string' || !COLLAPSE_KEY.test(key))) {
    return { ok: false, field: 'collapse_key', message: 'must match ^[A-Za-z0-9_.:-]{1,128}$' }
  }
  if (live === true && key !== undefined) {
    return { ok: false, field: 'collapse_key', message: 'a live_only event is not stored, so it cannot replace a stored one: drop one of the two' }
  }
  return { ok: true, controls: { ...(live === true && { liveOnly: true }), ...(key !== undefined && { collapseKey: key }) } }
}
