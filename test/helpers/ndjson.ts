// A raw HTTP/1.1 NDJSON stream client for tests: real sockets, lines split at
// LF only (what NDJSON promises), each non-empty line parsed by JSON.parse.
import { once } from 'node:events'
import { type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http'

/** One line: an object, null for an empty line (a heartbeat), or what did not parse. */
export type Line = Record<string, unknown> | null | { notJson: string }

export interface NdjsonStream {
  status: number
  headers: IncomingHttpHeaders
  /** Everything received, as text (the JSON error body of a refusal). */
  raw(): string
  /** Every complete line so far, in order. */
  lines: Line[]
  /** The non-empty lines so far. */
  objects(): Line[]
  /** Resolves with the first `n` non-empty lines once they are in (rejects if the stream ends first). */
  next(n: number): Promise<Line[]>
  /** Resolves once `n` empty lines (heartbeats) are in. */
  heartbeats(n: number): Promise<void>
  /** Resolves when the server ends the stream. */
  ended: Promise<void>
  close(): void
}

interface Teardown {
  teardown(fn: () => unknown): void
}

function parse(text: string): Line {
  if (text === '') return null
  try {
    return JSON.parse(text) as Record<string, unknown>
  } catch {
    return { notJson: text }
  }
}

export async function openNdjson(t: Teardown, url: string, headers: Record<string, string> = {}): Promise<NdjsonStream> {
  const req = request(url, { headers: { accept: 'application/x-ndjson', ...headers }, agent: false })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  t.teardown(() => req.destroy())
  const lines: Line[] = []
  let raw = ''
  let partial = ''
  let done = false
  const waiters = new Set<() => void>()
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => {
    raw += chunk
    partial += chunk
    for (let i = partial.indexOf('\n'); i >= 0; i = partial.indexOf('\n')) {
      lines.push(parse(partial.slice(0, i)))
      partial = partial.slice(i + 1)
    }
    for (const w of [...waiters]) w()
  })
  const ended = new Promise<void>((resolve) => {
    const finish = () => {
      done = true
      for (const w of [...waiters]) w()
      resolve()
    }
    res.once('end', finish)
    res.once('close', finish)
    res.once('error', finish)
  })
  const objects = () => lines.filter((l) => l !== null)
  const until = (ready: () => boolean, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (ready()) {
          waiters.delete(check)
          resolve()
        } else if (done) {
          waiters.delete(check)
          reject(new Error(`stream ended before ${what}; received: ${JSON.stringify(raw.slice(-500))}`))
        }
      }
      waiters.add(check)
      check()
    })
  // A stream is registered once its first bytes are out; a refusal is read whole.
  if (res.statusCode === 200 && res.headers['content-type']?.startsWith('application/x-ndjson')) await until(() => lines.length > 0, 'the first line')
  else await ended
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    raw: () => raw,
    lines,
    objects,
    next: async (n) => {
      await until(() => objects().length >= n, `${n} lines`)
      return objects().slice(0, n)
    },
    heartbeats: (n) => until(() => lines.length - objects().length >= n, `${n} heartbeats`),
    ended,
    close: () => req.destroy(),
  }
}
