// At most `limit` calls to an auth server at a time; the others wait their
// turn, first come first served. Without it, a reconnect storm opens one
// socket to the auth server per concurrent check (undici's pool has no upper
// bound); with it, a few kept-alive sockets carry them all. The caller's
// timeout covers the wait: a check never waits longer than it may take.
/** Checks in flight to one auth server at a time (upstream or introspection); more wait within their timeout. */
export const AUTH_IN_FLIGHT = 128

export class Slots {
  #free: number
  #queue: { wake: () => void; fail: (err: unknown) => void; signal: AbortSignal; onAbort: () => void }[] = []

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
      const entry = {
        wake: resolve,
        fail: reject,
        signal,
        onAbort: () => {
          const at = this.#queue.indexOf(entry)
          if (at >= 0) this.#queue.splice(at, 1)
          reject(signal.reason)
        },
      }
      signal.addEventListener('abort', entry.onAbort, { once: true })
      this.#queue.push(entry)
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

  /** Gives a slot back: to the longest waiting caller, or to the pool. */
  release(): void {
    const next = this.#queue.shift()
    if (next === undefined) {
      this.#free++
      return
    }
    next.signal.removeEventListener('abort', next.onAbort)
    next.wake()
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#queue.length
  }
}
