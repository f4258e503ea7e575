// Polls a condition until it holds or a deadline passes. For states that no
// event announces (a cluster agreeing on its slot map, a sentinel electing a
// new master); anything with an event or a log line should wait for that instead.
import { setTimeout as sleep } from 'node:timers/promises'

export interface WaitForOptions {
  /** Deadline for the whole wait. */
  timeoutMs: number
  /** What is awaited, for the error message ("cluster_state:ok on every node"). */
  what: string
  /** Pause between checks. Default 50 ms: cheap checks, quick reaction. */
  intervalMs?: number
}

/**
 * Calls `check` until it returns a value other than undefined, null or false,
 * and resolves with that value. A check that throws counts as "not yet"; the
 * last error (or a string the check returned via `reason`) goes into the
 * timeout's message, so a failure says what was seen, not only what was not.
 */
export async function waitFor<T>(
  check: (reason: (why: string) => void) => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: WaitForOptions,
): Promise<T> {
  const started = Date.now()
  let last = ''
  const reason = (why: string) => {
    last = why
  }
  for (;;) {
    try {
      const value = await check(reason)
      if (value !== undefined && value !== null && value !== false) return value
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    if (Date.now() - started >= opts.timeoutMs) {
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${last ? `; last seen: ${last}` : ''}`)
    }
    await sleep(opts.intervalMs ?? 50)
  }
}
