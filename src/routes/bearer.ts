// Checks a static bearer token (PUBLISH_TOKEN, METRICS_TOKEN) in constant time.
import { createHash, timingSafeEqual } from 'node:crypto'

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Returns a check of an Authorization header against `Bearer <token>`. */
export function bearerCheck(token: string): (header: string | undefined) => boolean {
  // Digests have one length whatever the input, so the comparison takes the same
  // time for every wrong token and does not reveal the real one's length.
  const expected = digest(`Bearer ${token}`)
  return (header) => header !== undefined && timingSafeEqual(digest(header.trim()), expected)
}
