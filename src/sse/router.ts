// recipient -> set of streams. Pure: knows nothing of sockets. Delivery cost is
// one map lookup plus the recipient's own streams, whatever the number of
// other users connected.
export class Router<S> {
  readonly #byUser = new Map<string, Set<S>>()
  #streams = 0

  /** Number of registered streams. */
  get size(): number {
    return this.#streams
  }

  /** Number of users with at least one stream. */
  get users(): number {
    return this.#byUser.size
  }

  add(userId: string, stream: S): void {
    let set = this.#byUser.get(userId)
    if (set === undefined) {
      set = new Set()
      this.#byUser.set(userId, set)
    }
    if (!set.has(stream)) {
      set.add(stream)
      this.#streams++
    }
  }

  remove(userId: string, stream: S): boolean {
    const set = this.#byUser.get(userId)
    if (set === undefined || !set.delete(stream)) return false
    this.#streams--
    // Drop empty sets at once so churn leaves nothing behind.
    if (set.size === 0) this.#byUser.delete(userId)
    return true
  }

  streamsOf(userId: string): ReadonlySet<S> | undefined {
    return this.#byUser.get(userId)
  }

  *all(): IterableIterator<S> {
    for (const set of this.#byUser.values()) yield* set
  }
}
