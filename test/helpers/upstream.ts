// A real HTTP auth upstream for tests. Default rules by token:
//   user-<id>      -> 200 {"user_id": "<id>"}
//   num-<n>        -> 200 {"user_id": <n>} (a JSON number)
//   status-<code>  -> that status
//   slow-<ms>-<id> -> 200 for <id> after <ms> milliseconds
//   anything else  -> 401
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeServer } from './listen.js'

export interface TestUpstream {
  url: string
  /** Calls received, by token. */
  calls: Map<string, number>
  /** Authorization headers received, in order. */
  headers: string[]
  totalCalls(): number
  /** Replaces the default rules. */
  handle(fn: (token: string, req: IncomingMessage, res: ServerResponse) => void): void
  /** Connections accepted (to check keep-alive reuse). */
  connections(): number
  close(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

export async function startUpstream(t: Teardown): Promise<TestUpstream> {
  const calls = new Map<string, number>()
  const headers: string[] = []
  let connections = 0
  let custom: ((token: string, req: IncomingMessage, res: ServerResponse) => void) | undefined
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const server = createServer((req, res) => {
    const auth = req.headers.authorization ?? ''
    headers.push(auth)
    const token = auth.replace(/^Bearer /, '')
    calls.set(token, (calls.get(token) ?? 0) + 1)
    if (custom) return custom(token, req, res)
    let m: RegExpExecArray | null
    if ((m = /^user-(.+)$/.exec(token))) return json(res, 200, { user_id: m[1] })
    if ((m = /^num-(\d+)$/.exec(token))) return json(res, 200, { user_id: Number(m[1]) })
    if ((m = /^status-(\d{3})$/.exec(token))) return json(res, Number(m[1]), { error: 'as asked' })
    if ((m = /^slow-(\d+)-(.+)$/.exec(token))) {
      const id = m[2]
      const timer = setTimeout(() => json(res, 200, { user_id: id }), Number(m[1]))
      res.on('close', () => clearTimeout(timer))
      return
    }
    json(res, 401, { error: 'unknown token' })
  })
  server.on('connection', () => connections++)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const close = () => closeServer(server)
  t.teardown(close)
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/me`,
    calls,
    headers,
    totalCalls: () => [...calls.values()].reduce((a, b) => a + b, 0),
    handle: (fn) => {
      custom = fn
    },
    connections: () => connections,
    close,
  }
}
