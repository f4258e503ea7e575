// Many deadlines, one timer: an indexed binary min-heap keyed by deadline, so a
// stream's expiry is scheduled and cancelled in O(log n) and the process holds
// a single timer however many streams carry an expiring token.

export interface Scheduled {
  /** Epoch milliseconds. */
  deadline: number
  /** Position in the heap, -1 when not scheduled. Owned by Deadlines. */
  heapIndex: number
}

/** setTimeout's largest delay; longer deadlines are re-armed on the way. */
const MAX_DELAY_MS = 2_147_483_647

export class Deadlines<T extends Scheduled> {
  readonly #heap: T[] = []
  #timer: NodeJS.Timeout | undefined
  #armedFor = Infinity

  constructor(
    private readonly onDue: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.#heap.length
  }

  add(item: T): void {
    if (item.heapIndex !== -1) this.remove(item)
    item.heapIndex = this.#heap.length
    this.#heap.push(item)
    this.#up(item.heapIndex)
    this.#arm()
  }

  remove(item: T): void {
    const i = item.heapIndex
    if (i < 0 || this.#heap[i] !== item) return
    const last = this.#heap.pop() as T
    item.heapIndex = -1
    if (i < this.#heap.length) {
      this.#heap[i] = last
      last.heapIndex = i
      this.#down(i)
      this.#up(last.heapIndex)
    }
    this.#arm()
  }

  clear(): void {
    for (const item of this.#heap) item.heapIndex = -1
    this.#heap.length = 0
    this.#arm()
  }

  #fire = (): void => {
    this.#timer = undefined
    this.#armedFor = Infinity
    const t = this.now()
    while (this.#heap.length > 0 && (this.#heap[0] as T).deadline <= t) {
      const item = this.#heap[0] as T
      this.remove(item)
      this.onDue(item)
    }
    this.#arm()
  }

  #arm(): void {
    const next = this.#heap[0]?.deadline ?? Infinity
    if (next === this.#armedFor) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = next
    if (next === Infinity) return
    const delay = Math.min(Math.max(next - this.now(), 0), MAX_DELAY_MS)
    // unref: a pending expiry must not keep the process alive on shutdown.
    this.#timer = setTimeout(this.#fire, delay).unref()
  }

  #up(i: number): void {
    const heap = this.#heap
    const item = heap[i] as T
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent] as T
      if (p.deadline <= item.deadline) break
      heap[i] = p
      p.heapIndex = i
      i = parent
    }
    heap[i] = item
    item.heapIndex = i
  }

  #down(i: number): void {
    const heap = this.#heap
    const n = heap.length
    const item = heap[i] as T
    for (;;) {
      let child = 2 * i + 1
      if (child >= n) break
      const right = child + 1
      if (right < n && (heap[right] as T).deadline < (heap[child] as T).deadline) child = right
      const c = heap[child] as T
      if (c.deadline >= item.deadline) break
      heap[i] = c
      c.heapIndex = i
      i = child
    }
    heap[i] = item
    item.heapIndex = i
  }
}
