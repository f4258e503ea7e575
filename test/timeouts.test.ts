// REQUEST_TIMEOUT_MS: a client that does not finish sending its request, or
// sends nothing at all, is disconnected; /notify streams are exempt. Requests with bodies to routes that take none are answered, not
// buffered. Real sockets throughout: inject() has no timeouts.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { type Built, build } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

const TOKEN = 'publish-token-0123456789abcdef'

interface RawClient {
  socket: Socket
  /** Everything received so far. */
  data(): string
  /** Resolves with the ms from `since` to the socket's close; rejects if it stays open `limitMs`. */
  closedWithin(limitMs: number, since: number): Promise<number>
  /** Resolves once the received bytes match `re`; rejects after `limitMs`. */
  received(re: RegExp, limitMs: number): Promise<string>
}

async function rawClient(t: Test, s: Built): Promise<RawClient> {
  const { port } = new URL(s.base)
  const socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  // The server may stop reading and reset a connection we are still writing to.
  socket.on('error', () => {})
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => (data += chunk))
  const closed = once(socket, 'close').then(() => performance.now())
  await once(socket, 'connect')
  const deadline = <T>(p: Promise<T>, limitMs: number, what: () => string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what()} within ${limitMs} ms`)), limitMs)
    })
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
  }
  return {
    socket,
    data: () => data,
    closedWithin: (limitMs, since) =>
      deadline(
        closed.then((at) => at - since),
        limitMs,
        () => `the server did not close the connection (received: ${JSON.stringify(data.slice(0, 200))})`,
      ),
    received: (re, limitMs) =>
      deadline(
        new Promise<string>((resolve) => {
          const check = () => {
            if (!re.test(data)) return
            socket.off('data', check)
            resolve(data)
          }
          socket.on('data', check)
          check()
        }),
        limitMs,
        () => `no answer matching ${re} (received: ${JSON.stringify(data.slice(0, 200))})`,
      ),
  }
}

/** Whatever was answered before the close is nothing, or a 408. */
function nothingOr408(t: Test, data: string): void {
  t.ok(data === '' || data.startsWith('HTTP/1.1 408'), `no answer or 408 (got ${JSON.stringify(data.slice(0, 60))})`)
}

const TIMEOUT = 300
// Generous: the close must come "within about REQUEST_TIMEOUT_MS"; 10x is a failure.
const LIMIT = 3000

t.test('a request body that never completes: the connection is closed', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { REQUEST_TIMEOUT_MS: String(TIMEOUT), PUBLISH_TOKEN: TOKEN } })
  const c = await rawClient(t, s)
  const since = performance.now()
  c.socket.write(
    'POST /publish HTTP/1.1\r\nHost: x\r\n' +
      `Authorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n` +
      '{"recipie_', // 10 of the 100 bytes
  )
  const ms = await c.closedWithin(LIMIT, since)
  t.ok(ms >= TIMEOUT - 50, `not before the timeout (${ms.toFixed(0)} ms)`)
  nothingOr408(t, c.data())
  t.comment(`closed after ${ms.toFixed(0)} ms`)
})

t.test('request headers that never complete: the connection is closed', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { REQUEST_TIMEOUT_MS: String(TIMEOUT) } })
  const c = await rawClient(t, s)
  const since = performance.now()
  c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ')
  const ms = await c.closedWithin(LIMIT, since)
  t.ok(ms >= TIMEOUT - 50, `not before the timeout (${ms.toFixed(0)} ms)`)
  nothingOr408(t, c.data())
  t.comment(`closed after ${ms.toFixed(0)} ms`)
})

t.test('a connection that never sends a byte is closed', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { REQUEST_TIMEOUT_MS: String(TIMEOUT) } })
  const since = performance.now()
  const c = await rawClient(t, s)
  const ms = await c.closedWithin(LIMIT, since)
  t.ok(ms >= TIMEOUT - 50, `not before the timeout (${ms.toFixed(0)} ms)`)
  // Two timers race here, both set to REQUEST_TIMEOUT_MS: the idle socket timeout
  // closes silently, Node's request-timeout sweep answers 408 first. Either is right.
  nothingOr408(t, c.data())
})

// Between requests, an idle keep-alive connection lives Fastify's keepAliveTimeout
// (72 s), longer than common load balancers' idle timeout (60 s) so that the
// balancer, not the service, closes it: otherwise a request it sends on a
// connection being closed fails with 502. Too long to wait for here; the header says it.
t.test('an idle keep-alive connection announces its 72 s lifetime', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { REQUEST_TIMEOUT_MS: String(TIMEOUT) } })
  const res = await fetch(`${s.base}/healthz`)
  await res.text()
  t.equal(res.headers.get('keep-alive'), 'timeout=72')
})

t.test('a keep-alive connection in use is not cut while requests keep coming', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { REQUEST_TIMEOUT_MS: String(TIMEOUT) } })
  const c = await rawClient(t, s)
  const since = performance.now()
  // Ten requests, each well within the idle timeout of the one before, over ~1 s in all.
  for (let i = 1; i <= 10; i++) {
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
    await c.received(new RegExp(`(HTTP/1\\.1 200 [^]*?\\{"status":"ok"\\}[^]*?){${i}}`), LIMIT)
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT / 3))
  }
  t.ok(performance.now() - since > TIMEOUT * 2, 'the connection outlived the timeout while in use')
  t.equal(c.socket.destroyed, false, 'still open')
})

t.test('/notify streams are exempt: open well past the timeout, then an event arrives', async (t) => {
  const s = await build(t, { env: { REQUEST_TIMEOUT_MS: String(TIMEOUT), HEARTBEAT_INTERVAL_MS: '50' } })
  const since = performance.now()
  const stream = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-long' })
  t.equal(stream.status, 200)
  // The first comment is the `: connected` greeting; then 20 heartbeats.
  await stream.nextComments(21)
  const elapsed = performance.now() - since
  t.ok(elapsed > TIMEOUT * 2, `open for ${elapsed.toFixed(0)} ms`)
  await s.publish({ recipient_id: 'long', type: 'late' })
  t.equal((await stream.nextEvents(1))[0]?.event, 'late')
  t.equal(s.app.notifier.hub.size, 1)
  t.same(s.app.notifier.hub.stats.closed, { client: 0, slow: 0, expired: 0, shutdown: 0, unavailable: 0 })
})

t.test('/notify: an authentication slower than the timeout still opens the stream', async (t) => {
  const s = await build(t, { env: { REQUEST_TIMEOUT_MS: String(TIMEOUT), HEARTBEAT_INTERVAL_MS: '50' } })
  const stream = await openStream(t, `${s.base}/notify`, { authorization: `Bearer slow-${TIMEOUT * 2}-tardy` })
  t.equal(stream.status, 200)
  await stream.nextComments(5)
  await s.publish({ recipient_id: 'tardy', type: 'late' })
  t.equal((await stream.nextEvents(1))[0]?.event, 'late')
})

t.test('a large body to a route that takes none is answered, not buffered', async (t) => {
  // Default REQUEST_TIMEOUT_MS (10 s): an answer within 3 s is not the timeout's.
  const s = await build(t, { broker: 'embedded' })
  const MB = 1024 * 1024
  const STATUS = /^HTTP\/1\.1 (404|405|413) /

  await t.test('POST /notify announcing 1 MB, of which 64 KiB are sent', async (t) => {
    const c = await rawClient(t, s)
    c.socket.write(`POST /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-1\r\nContent-Type: application/json\r\nContent-Length: ${MB}\r\n\r\n`)
    c.socket.write(Buffer.alloc(64 * 1024, 'x'))
    const answer = await c.received(/\r\n\r\n/, LIMIT)
    t.match(answer, STATUS)
    t.equal(s.app.notifier.hub.size, 0)
  })

  await t.test('POST /healthz with a whole 1 MB chunked body', async (t) => {
    const c = await rawClient(t, s)
    c.socket.write('POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n')
    const chunk = Buffer.alloc(64 * 1024, 'y')
    for (let i = 0; i < MB / chunk.length && !c.socket.destroyed; i++) {
      c.socket.write(`${chunk.length.toString(16)}\r\n`)
      c.socket.write(chunk)
      c.socket.write('\r\n')
    }
    if (!c.socket.destroyed) c.socket.write('0\r\n\r\n')
    const answer = await c.received(/\r\n\r\n/, LIMIT)
    t.match(answer, STATUS)
  })

  const health = await fetch(`${s.base}/healthz`)
  t.equal(health.status, 200, 'the server still answers')
})

t.test('REQUEST_TIMEOUT_MS config: default 10000, minimum 100', async (t) => {
  const base = { AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:9000/me' }
  t.equal(loadConfig(base).requestTimeoutMs, 10_000)
  t.equal(loadConfig({ ...base, REQUEST_TIMEOUT_MS: '100' }).requestTimeoutMs, 100)
  for (const value of ['99', '0', '-1', 'soon']) {
    t.throws(() => loadConfig({ ...base, REQUEST_TIMEOUT_MS: value }), { name: 'ConfigError', message: /REQUEST_TIMEOUT_MS/ }, `REQUEST_TIMEOUT_MS=${value}`)
  }
})
