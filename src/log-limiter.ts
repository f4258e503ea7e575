// Logs one line per key per interval, and says how many were suppressed, so a
// flood of bad input or a dead dependency cannot flood the logs.
import type { FastifyBaseLogger } from 'fastify'

type Level = 'warn' | 'error' | 'info'

export class LogLimiter {
  readonly #last = new Map<string, { at: number; suppressed: number }>()

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  write(level: Level, key: string, obj: Record<string, unknown>, msg: string): void {
    const t = this.now()
    const seen = this.#last.get(key)
    if (seen !== undefined && t - seen.at < this.intervalMs) {
      seen.suppressed++
      return
    }
    // Keys are a small fixed set (drop reasons, failure kinds), so the map stays small.
    this.#last.set(key, { at: t, suppressed: 0 })
    this.log[level]({ ...obj, ...(seen !== undefined && seen.suppressed > 0 && { suppressed: seen.suppressed }) }, msg)
  }
}
