// A raw HTTP/1.1 event-stream client for tests: real sockets, and the output
// parsed by a real SSE parser (eventsource-parser), not by our own code.
import { once } from 'node:events'
import { type IncomingHttpHeaders, request } from 'node:http'
import { createParser, type EventSourceMessage } from 'eventsource-parser'

export interface TestStream {
  status: number
  headers: IncomingHttpHeaders
  /** The response body for non-200 answers. */
  body: string
  /** The events, without the service's `position` announcements (see `positions`). */
  events: EventSourceMessage[]
  /** The ids of the `position` events: where the service said the stream stands. */
  positions: string[]
  comments: string[]
  retry: number[]
  /** Everything received, as text. */
  raw(): string
  /** Resolves when `n` events have arrived in total (rejects if the stream ends first). */
  nextEvents(n: number): Promise<EventSourceMessage[]>
  /** Resolves when `n` comments have arrived in total. */
  nextComments(n: number): Promise<string[]>
  /** Resolves when the server ends the stream. */
  ended: Promise<void>
  close(): void
}

interface Teardown {
  teardown(fn: () => unknown): void
}

export async function openStream(
  t: Teardown,
  url: string,
  headers: Record<string, string> = {},
): Promise<TestStream> {
  const req = request(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false })
  req.end()
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
  t.teardown(() => req.destroy())
  const events: EventSourceMessage[] = []
  const comments: string[] = []
  const positions: string[] = []
  const retry: number[] = []
  let raw = ''
  let done = false
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of [...waiters]) w()
  }
  const parser = createParser({
    onEvent: (e) => {
      if (e.event === 'position') positions.push(e.id ?? '')
      else events.push(e)
    },
    onComment: (c) => comments.push(c),
    onRetry: (r) => retry.push(r),
  })
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => {
    raw += chunk
    parser.feed(chunk)
    wake()
  })
  const ended = new Promise<void>((resolve) => {
    const finish = () => {
      done = true
      wake()
      resolve()
    }
    res.once('end', finish)
    res.once('close', finish)
    res.once('error', finish)
  })
  const until = <T>(ready: () => boolean, value: () => T, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (ready()) {
          waiters.delete(check)
          resolve(value())
        } else if (done) {
          waiters.delete(check)
          reject(new Error(`stream ended before ${what}; received: ${JSON.stringify(raw.slice(-500))}`))
        }
      }
      waiters.add(check)
      check()
    })
  if (res.statusCode === 200 && res.headers['content-type']?.startsWith('text/event-stream')) {
    // Wait for the first bytes: the stream is registered once they are out.
    await until(() => raw.length > 0, () => undefined, 'the first bytes')
  } else {
    await ended
  }
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    get body() {
      return raw
    },
    events,
    positions,
    comments,
    retry,
    raw: () => raw,
    nextEvents: (n) => until(() => events.length >= n, () => events.slice(0, n), `${n} events`),
    nextComments: (n) => until(() => comments.length >= n, () => comments.slice(0, n), `${n} comments`),
    ended,
    close: () => req.destroy(),
  }
}
