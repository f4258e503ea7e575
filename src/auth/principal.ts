/** Who is connecting, as established by a verifier. */
export interface Principal {
  userId: string
  /** Epoch milliseconds at which the credentials stop being valid, when known. */
  expiresAt?: number
}

/** Checks a token; resolves to the principal or rejects with a catalog error (401 or 503). */
export type Verifier = (token: string) => Promise<Principal>

/**
 * How a cached verifier answered: from its cache, by calling the auth server,
 * or by joining a call for the same token already in flight.
 */
export type CacheLookup = 'hit' | 'miss' | 'shared'
