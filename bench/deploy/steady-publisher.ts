// Publishes at a steady rate until told to stop (publishAtRate in
// load/publisher.ts runs for a fixed time; a deploy lasts as long as it
// lasts): each event to one random user, numbered per user, and every
// acknowledged event noted, since an event counts as lost only if the
// publisher was told it was stored.
import type { Publisher } from '../../src/publisher.js'

const TICK_MS = 5

export class SteadyPublisher {
  /** Per user, the seqs whose publish was acknowledged (in answer order). */
  readonly acked = new Map<string, number[]>()
  sent = 0
  failed = 0
  firstError: string | undefined
  readonly #nextSeq = new Map<string, number>()
  readonly #pending = new Set<Promise<unknown>>()
  #timer: NodeJS.Timeout | undefined

  constructor(
    private readonly publisher: Publisher,
    private readonly users: string[],
    private readonly rate: number,
  ) {}

  /**
   * Ticks every few ms and sends what the clock says is due, so a late tick
   * catches up instead of lowering the rate. One publish per event, not
   * awaited: ioredis pipelines them on one connection, so a user's events are
   * stored in the order they were sent.
   */
  start(): void {
    const start = performance.now()
    this.#timer = setInterval(() => {
      const due = Math.floor(((performance.now() - start) / 1000) * this.rate)
      while (this.sent < due) this.#send()
    }, TICK_MS)
  }

  /** Stops sending; resolves once every publish sent has been answered. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await Promise.all(this.#pending)
  }

  get ackedCount(): number {
    let n = 0
    for (const seqs of this.acked.values()) n += seqs.length
    return n
  }

  #send(): void {
    const user = this.users[Math.floor(Math.random() * this.users.length)] as string
    const seq = this.#nextSeq.get(user) ?? 0
    this.#nextSeq.set(user, seq + 1)
    this.sent++
    const p = this.publisher
      .publish({ recipient_id: user, type: 'deploy', seq })
      .then(
        () => {
          const seqs = this.acked.get(user)
          if (seqs === undefined) this.acked.set(user, [seq])
          else seqs.push(seq)
        },
        (err: Error) => {
          this.failed++
          this.firstError ??= err.message
        },
      )
      .finally(() => this.#pending.delete(p))
    this.#pending.add(p)
  }
}
