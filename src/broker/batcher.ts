// Groups single requests into batches (one Redis pipeline each) with a bound on
// batches in flight: 10,000 streams reconnecting at once cost ~40 round trips,
// not 10,000, and never more than `maxInFlight` pipelines' worth of replies in memory.
interface Waiting<Q, R> {
  request: Q
  resolve: (r: R) => void
  reject: (err: unknown) => void
}

export class Batcher<Q, R> {
  #queue: Waiting<Q, R>[] = []
  #inFlight = 0
  #scheduled = false

  constructor(
    private readonly run: (batch: Q[]) => Promise<R[]>,
    private readonly maxBatch = 256,
    private readonly maxInFlight = 4,
  ) {}

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.#queue.length
  }

  add(request: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ request, resolve, reject })
      if (!this.#scheduled) {
        // Let every request made in this turn of the event loop join the batch.
        this.#scheduled = true
        setImmediate(this.#flush)
      }
    })
  }

  #flush = (): void => {
    this.#scheduled = false
    while (this.#inFlight < this.maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.maxBatch)
      this.#inFlight++
      // Through a promise, so a run that throws synchronously still frees its slot.
      Promise.resolve(batch.map((w) => w.request)).then(this.run).then(
        (results) => batch.forEach((w, i) => w.resolve(results[i] as R)),
        (err: unknown) => batch.forEach((w) => w.reject(err)),
      ).finally(() => {
        this.#inFlight--
        this.#flush()
      })
    }
  }
}
