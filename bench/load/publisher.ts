// Publishes events on the channel at a fixed rate, each stamped with the
// monotonic clock (`t`, nanoseconds) and a sequence number, so every delivery
// yields a latency and duplicates or reordering show.
import type { Redis } from 'ioredis'

export interface Stamped {
  seq: number
  t: string
  [k: string]: unknown
}

/**
 * Sends `rate` events per second for `seconds`; `make(seq)` says what (beyond
 * seq and t). Ticks every 5 ms and sends what the clock says is due, so a late
 * tick catches up instead of lowering the rate. Resolves with the events sent.
 */
export async function publishAtRate(
  redis: Redis,
  channel: string,
  rate: number,
  seconds: number,
  make: (seq: number) => Record<string, unknown>,
): Promise<Stamped[]> {
  const total = Math.round(rate * seconds)
  const sent: Stamped[] = []
  const start = process.hrtime.bigint()
  while (sent.length < total) {
    const due = Math.min(total, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate) + 1)
    while (sent.length < due) {
      const seq = sent.length
      const event: Stamped = { ...make(seq), seq, t: process.hrtime.bigint().toString() }
      sent.push(event)
      void redis.publish(channel, JSON.stringify(event))
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await redis.ping() // every PUBLISH before it has been answered
  return sent
}
