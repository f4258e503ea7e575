// Connection limits for /notify. Pure: counts come from the hub. The total is
// checked before authentication, counting checks in flight, so a flood of
// connects cannot start more auth calls than the instance could ever admit;
// the per-user bound can only be checked once the user is known.
export interface AdmissionLimits {
  maxConnections: number
  maxConnectionsPerUser: number
}

export interface StreamCounts {
  /** Streams open now. */
  readonly size: number
  /** Streams open now for one user. */
  countOf(userId: string): number
}

export class Admission {
  #authenticating = 0

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly streams: StreamCounts,
  ) {}

  /** Reserves a place for a connect being authenticated; false when the instance is full. */
  enter(): boolean {
    if (this.streams.size + this.#authenticating >= this.limits.maxConnections) return false
    this.#authenticating++
    return true
  }

  /**
   * Gives the reservation back once authentication has ended; call it right
   * before opening the stream, in the same tick, so the count never dips.
   */
  leave(): void {
    this.#authenticating--
  }

  /** True when this user may not open one more stream. */
  userFull(userId: string): boolean {
    return this.streams.countOf(userId) >= this.limits.maxConnectionsPerUser
  }

  /** Connects being authenticated now. */
  get authenticating(): number {
    return this.#authenticating
  }
}
