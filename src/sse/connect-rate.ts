// The per-client connect rate of /notify: at most `max` connects per client
// address in a fixed window of `windowMs` that starts with its first connect.
// Pure (the clock is passed in). Bounded: it remembers at most `maxKeys`
// addresses, dropping the least recently seen first, so a flood from many
// addresses costs a fixed amount of memory (and forgets some of them early).

interface Window {
  count: number
  resetsAt: number
}

export class ConnectRate {
  // A Map iterates in insertion order: re-inserting on every hit keeps the
  // least recently seen address first, where eviction looks.
  readonly #windows = new Map<string, Window>()

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly maxKeys: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one connect from `key`: 0 when allowed, else the milliseconds until its window resets. */
  hit(key: string): number {
    const t = this.now()
    let w = this.#windows.get(key)
    if (w === undefined || w.resetsAt <= t) w = { count: 0, resetsAt: t + this.windowMs }
    this.#windows.delete(key)
    this.#windows.set(key, w)
    if (this.#windows.size > this.maxKeys) this.#windows.delete(this.#windows.keys().next().value as string)
    w.count++
    return w.count > this.max ? w.resetsAt - t : 0
  }

  /** Addresses remembered now. */
  get size(): number {
    return this.#windows.size
  }
}
