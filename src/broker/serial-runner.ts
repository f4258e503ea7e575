// Runs an async job on request, one run at a time: requests made while it runs
// are served by one more run after it; runs start at least `gapMs` apart (so
// requests arriving spread out are batched too); a run that fails is retried
// with back-off. subscriptions.ts runs its reconciling pass with it.

export class SerialRunner {
  #scheduled = false
  #running = false
  #again = false
  #stopped = false
  #lastStart = -Infinity
  #failures = 0
  #retryTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly job: () => Promise<void>,
    private readonly gapMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Asks for a run: soon, or after the one in progress. Cheap to call often. */
  request = (): void => {
    if (this.#scheduled || this.#stopped) return
    this.#scheduled = true
    // Every request of this turn (or of the gap) joins the same run.
    const wait = this.#lastStart + this.gapMs - performance.now()
    if (wait > 0) setTimeout(this.#run, wait)
    else setImmediate(this.#run)
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#retryTimer)
  }

  #run = async (): Promise<void> => {
    this.#scheduled = false
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = true
    try {
      do {
        const wait = this.#lastStart + this.gapMs - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        this.#again = false
        this.#lastStart = performance.now()
        await this.job()
        this.#failures = 0
      } while (this.#again && !this.#stopped)
    } catch (err) {
      this.#failures++
      this.onError(err)
      clearTimeout(this.#retryTimer)
      this.#retryTimer = setTimeout(this.request, Math.min(100 * this.#failures, 2000)).unref()
    } finally {
      this.#running = false
    }
  }
}
