// At most `limit` calls to an auth server at a time; the others wait their
// turn, first come first served. Without it, a reconnect storm opens one
// socket to the auth server per concurrent check (undici's pool has no upper
// bound); with it, a few kept-alive sockets carry them all. The caller's
// timeout covers the wait: a check never waits longer than it may take.

/** Checks in flight to one auth server at a time (upstream or introspection); more wait within their timeout. */
export const AUTH_IN_FLIGHT = 128

/**
 * One auth server's check: `call` runs in one of AUTH_IN_FLIGHT slots, under a
 * timeout that starts before the wait for the slot, so it bounds the whole
 * check. A check that times out while waiting rejects with `unreachable(reason)`.
 */
export function boundedCheck<T>(
  timeoutMs: number,
  call: (token: string, signal: AbortSignal) => Promise<T>,
  unreachable: (reason: unknown) => Error,
): (token: string) => Promise<T> {
  const slots = new Slots(AUTH_IN_FLIGHT)
  return async (token) => {
    // Not AbortSignal.timeout(): its timer runs out after every check, however
    // early the check ended, and builds a DOMException each time; in a connect
    // burst that cost about as much as creating the signal (22-37 µs per check
    // against 12-14 µs with a cleared timer; the measurement is in the commit
    // message). The reason is the same TimeoutError.
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), timeoutMs)
    try {
      return await slots.run(controller.signal, () => call(token, controller.signal), unreachable)
    } finally {
      clearTimeout(timer)
    }
  }
}

interface Waiter {
  wake: () => void
  signal: AbortSignal
  onAbort: () => void
  /** Gave up (its signal aborted); skipped when its turn comes. */
  gone: boolean
}

export class Slots {
  #free: number
  #queue: Waiter[] = []
  #waiting = 0

  constructor(limit: number) {
    this.#free = limit
  }

  /** Resolves once a slot is this caller's; rejects with the signal's reason if it aborts first. */
  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason)
    if (this.#free > 0) {
      this.#free--
      return Promise.resolve()
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: resolve,
        signal,
        // Marked, not searched for: a storm of timeouts stays linear.
        onAbort: () => {
          waiter.gone = true
          this.#waiting--
          reject(signal.reason)
        },
        gone: false,
      }
      signal.addEventListener('abort', waiter.onAbort, { once: true })
      this.#queue.push(waiter)
      this.#waiting++
    })
  }

  /**
   * Runs `fn` in a slot. If `signal` aborts while waiting, `fn` never runs and
   * the call rejects with `onAbort(reason)`; `fn` gets the same signal.
   */
  async run<T>(signal: AbortSignal, fn: () => Promise<T>, onAbort: (reason: unknown) => Error): Promise<T> {
    try {
      await this.acquire(signal)
    } catch (reason) {
      throw onAbort(reason)
    }
    try {
      return await fn()
    } finally {
      this.release()
    }
  }

  /** Gives a slot back: to the longest waiting caller still there, or to the pool. */
  release(): void {
    for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) {
      if (next.gone) continue
      next.signal.removeEventListener('abort', next.onAbort)
      this.#waiting--
      next.wake()
      return
    }
    this.#free++
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting
  }
}
