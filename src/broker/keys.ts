// Names of a recipient's Redis keys and channel, pure. Everything of one
// recipient carries the recipient in braces (a Redis Cluster hash tag), so it
// all lives in one slot: the history, the collapse index, the idempotency
// markers and the shard channel, and redis/publish.lua can touch them in one atomic call.
// NOTIFY_CHANNEL has no braces (config.ts), so the recipient's are the first.

/** The recipient's history: a Stream. */
export function historyKey(channel: string, recipient: string): string {
  return `${channel}:history:{${recipient}}`
}

/** Collapse key -> the ids of its latest stored event and of those it replaced (redis/publish.lua). */
export function collapseIndexKey(channel: string, recipient: string): string {
  return `${channel}:collapse:{${recipient}}`
}

/** The recipient's own channel (sharded pub/sub): only instances holding a stream of theirs listen. */
export function liveChannel(channel: string, recipient: string): string {
  return `${channel}:{${recipient}}`
}

/** The marker of one idempotent publish to one recipient. `token` is the script's ARGV[8]. */
export function idempotencyKey(channel: string, recipient: string, token: string): string {
  return `${channel}:idem:{${recipient}}:${token}`
}

