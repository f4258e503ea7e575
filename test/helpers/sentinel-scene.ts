// What the Sentinel tests (sentinel.test.ts, sentinel-wait.test.ts) share: an
// instance on the test Sentinel setup, and a timed POST /publish that keeps
// what a publisher decides by (status, catalog code, Retry-After, ids).
import { build, type Built } from './app.js'
import type { TestSentinel } from './sentinel.js'

export const TOKEN = 'publish-token-0123456789abcdef'

export function sentinelInstance(t: Parameters<typeof build>[0], sen: TestSentinel, env: Record<string, string> = {}): Promise<Built> {
  const client = sen.client()
  return build(t, {
    topology: { env: { REDIS_SENTINELS: sen.seeds, REDIS_SENTINEL_NAME: sen.name }, publish: (channel, message) => client.publish(channel, message) },
    env: { PUBLISH_TOKEN: TOKEN, ...env },
  })
}

export interface PublishAnswer {
  status: number
  code: string | undefined
  retryAfter: string | null
  ids: string[]
  /** performance.now() when the call was made and when its answer was read. */
  started: number
  ended: number
}

export async function postPublish(s: Built, body: unknown, key: string): Promise<PublishAnswer> {
  const started = performance.now()
  const res = await fetch(`${s.base}/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, 'idempotency-key': key },
    body: JSON.stringify(body),
    // A hang is a failure here, not a test timeout.
    signal: AbortSignal.timeout(15_000),
  })
  const json = (await res.json()) as { code?: string; published?: { id: string }[] }
  return {
    status: res.status,
    code: json.code,
    retryAfter: res.headers.get('retry-after'),
    ids: (json.published ?? []).map((p) => p.id),
    started,
    ended: performance.now(),
  }
}
