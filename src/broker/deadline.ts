// A bound on one broker call, whatever happens below it (ioredis retrying a
// CLUSTERDOWN, a subscription waiting for a reconnect): the caller hears back
// in time. What the call was doing may still finish later; its outcome is then
// ignored (publishes stay safe to retry with an idempotency key).

/** The call did not finish within its bound. */
export class DeadlineExceeded extends Error {
  override name = 'DeadlineExceeded'
}

export function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DeadlineExceeded(`${what}: no answer from Redis within ${ms} ms`)), ms)
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err)
      },
    )
  })
}
