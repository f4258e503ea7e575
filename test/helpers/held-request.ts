// A request on a connection that is busy when the server starts closing: its
// head is sent but for the blank line that ends it. Node's server.close() cuts
// idle keep-alive connections, not busy ones, so this one outlives the close of
// the listening socket, as a balancer's connection in use does, and its request
// reaches the draining service once `complete()` sends the blank line.
import { once } from 'node:events'
import { connect } from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface RawResponse {
  status: number
  /** Header names in lower case. */
  headers: Record<string, string>
  /** The body, de-chunked when it came chunked. */
  body: string
}

export interface HeldRequest {
  /** Sends the end of the head; resolves with the response once the server has closed the connection. */
  complete(): Promise<RawResponse>
}

export async function holdRequest(t: Teardown, base: string, path: string, headers: Record<string, string> = {}): Promise<HeldRequest> {
  const { hostname, port } = new URL(base)
  const socket = connect(Number(port), hostname)
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let raw = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => (raw += d))
  const closed = once(socket, 'close')
  const lines = [`GET ${path} HTTP/1.1`, 'Host: test', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
  socket.write(`${lines.join('\r\n')}\r\n`)
  return {
    complete: async () => {
      socket.write('\r\n')
      await closed
      return parse(raw)
    },
  }
}

function parse(raw: string): RawResponse {
  const split = raw.indexOf('\r\n\r\n')
  if (split < 0) throw new Error(`no complete response head: ${JSON.stringify(raw.slice(0, 200))}`)
  const [statusLine = '', ...headerLines] = raw.slice(0, split).split('\r\n')
  const headers = Object.fromEntries(
    headerLines.map((l) => {
      const colon = l.indexOf(':')
      return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()]
    }),
  )
  let body = raw.slice(split + 4)
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body)
  return { status: Number(statusLine.split(' ')[1]), headers, body }
}

function dechunk(text: string): string {
  let out = ''
  let at = 0
  for (;;) {
    const eol = text.indexOf('\r\n', at)
    if (eol < 0) return out
    const size = Number.parseInt(text.slice(at, eol), 16)
    if (!(size > 0)) return out
    out += text.slice(eol + 2, eol + 2 + size)
    at = eol + 2 + size + 2
  }
}
