// One rule for user ids, shared by the auth side (who is connecting) and the
// channel side (who an event is for), so both compare the same strings.

/** Longest user id accepted, in characters. */
export const MAX_RECIPIENT_LENGTH = 256

/**
 * A user id is a non-empty string (at most 256 characters) or a safe integer,
 * compared as its decimal string: 42 and "42" are the same user. Anything else
 * (floats, huge numbers that lost precision, objects, empty strings) is refused,
 * and so is a string that starts with `}`: in a Redis key `…{<id>}` that makes
 * an empty hash tag, and the user's keys and channel would land in different
 * Redis Cluster slots.
 */
export function normalizeRecipient(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value.length > 0 && value.length <= MAX_RECIPIENT_LENGTH && value.charCodeAt(0) !== 0x7d ? value : undefined
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value)
  return undefined
}
