// A real nginx in front of the service, configured by deploy/nginx.conf, the file
// the README shows (only its upstream and listen addresses are replaced; the
// README's lines are checked to be lines of it). The configuration around it
// ignores the service's X-Accel-Buffering header and gzips event streams, so
// only the file's own settings keep the stream flowing. Checked: the stream
// passes through unbuffered (head, heartbeats, an event published meanwhile); a
// client that stops reading still reaches the service's slow-consumer limit;
// ordinary routes work; Host and X-Forwarded-* reach the service over kept-alive
// HTTP/1.1; a stream the service ends (and whose head says `Connection: close`)
// leaves the client's connection to nginx open for its next request.
//
// Not tested, because it takes longer than the snippet's proxy_read_timeout
// (60 s): that a quiet stream outlives it. It does: proxy_read_timeout bounds
// the time between two reads from the service, not the response, and the
// service writes a heartbeat every HEARTBEAT_INTERVAL_MS (default 15 s).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Agent, createServer, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT } from 'jose'
import t, { type Test } from 'tap'
import type { SseStream } from '../src/sse/stream.js'
import { build } from './helpers/app.js'
import { findNginx } from './helpers/fleet-nginx.js'
import { freePort } from './helpers/redis.js'
import { openStream } from './helpers/sse.js'
import { accepts, listenLoopback } from './helpers/listen.js'

const SNIPPET = new URL('../deploy/nginx.conf', import.meta.url)
const PUBLISH_TOKEN = 'nginx-test-publish-token'
// A stream that nginx holds back never gets its events; fail well before tap's 120 s.
const TIMEOUT = 20_000

/** Replaces the one match of `pattern` (which must match exactly once). */
function replaceOnce(text: string, pattern: RegExp, replace: (line: string) => string): string {
  const matches = text.match(new RegExp(pattern.source, 'gm')) ?? []
  if (matches.length !== 1) throw new Error(`deploy/nginx.conf: expected one line matching ${pattern}, found ${matches.length}`)
  return text.replace(new RegExp(pattern.source, 'm'), replace)
}

/** deploy/nginx.conf pointed at the service's port and listening on 127.0.0.1:<port>; nothing else changes. */
function render(snippet: string, upstreamPort: number, listenPort: number): string {
  const upstream = replaceOnce(snippet, /^(\s*server\s+)127\.0\.0\.1:8080;/, (l) => l.replace('127.0.0.1:8080', `127.0.0.1:${upstreamPort}`))
  return replaceOnce(upstream, /^(\s*listen\s+)80;/, (l) => l.replace('80;', `127.0.0.1:${listenPort};`))
}

/**
 * The main configuration around the snippet: everything nginx writes goes to
 * `dir`. `bind`: the local address of nginx's connections to the service.
 */
function wrapper(dir: string, bind?: string): string {
  return `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # A hostile http block: the service's X-Accel-Buffering header ignored and
  # everything compressed. Only the snippet's own settings keep the stream flowing.
  proxy_ignore_headers X-Accel-Buffering;
  gzip on;
  gzip_types text/event-stream application/json;
  gzip_min_length 1;
  ${bind === undefined ? '' : `proxy_bind ${bind};`}
  include ${dir}/notify.conf;
}
`
}

/** Runs `nginx -t`, then nginx in the foreground; stopped at teardown. Returns its base URL. */
async function startNginx(t: Test, nginx: string, upstreamPort: number, bind?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'notify-nginx-'))
  const port = await freePort()
  await writeFile(join(dir, 'notify.conf'), render(await readFile(SNIPPET, 'utf8'), upstreamPort, port))
  const conf = join(dir, 'nginx.conf')
  await writeFile(conf, wrapper(dir, bind))
  const args = ['-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log')]

  const test = spawn(nginx, [...args, '-t'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let testOut = ''
  test.stdout.on('data', (d: Buffer) => (testOut += d))
  test.stderr.on('data', (d: Buffer) => (testOut += d))
  const [code] = (await once(test, 'exit')) as [number | null]
  t.equal(code, 0, 'nginx -t accepts the configuration', { output: testOut })

  const proc = spawn(nginx, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d: Buffer) => (stderr += d))
  const exited = once(proc, 'exit')
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM') // fast shutdown: open streams are cut
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  })
  // Bound once the pid file exists, but nothing reports that: poll the port.
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
      throw new Error(`nginx exited (${proc.exitCode ?? proc.signalCode}): ${stderr}${log}`)
    }
    if (await accepts(port)) break
    if (i === 250) throw new Error(`nginx not listening on :${port} after 5 s: ${stderr}`)
    await sleep(20)
  }
  return `http://127.0.0.1:${port}`
}


interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** One plain HTTP/1.1 request on its own connection. */
async function send(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false })
  req.end(opts.body)
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
  let body = ''
  res.setEncoding('utf8')
  for await (const chunk of res) body += chunk
  return { status: res.statusCode ?? 0, headers: res.headers, body }
}

const portOf = (base: string) => Number(new URL(base).port)

t.test("the README's nginx lines are lines of deploy/nginx.conf", async (t) => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const block = /### Behind nginx\n[\s\S]*?```nginx\n([\s\S]*?)```/.exec(readme)?.[1]
  if (block === undefined) return t.fail('README: no nginx code block under "### Behind nginx"')
  const lines = new Set((await readFile(SNIPPET, 'utf8')).split('\n').map((l) => l.trimEnd()))
  for (const line of block.split('\n').filter((l) => l.trim() !== '')) t.ok(lines.has(line), line.trim())
})

const nginx = findNginx()
if (nginx === undefined) {
  if (process.env.CI) t.fail('nginx not found (PATH, /usr/sbin): CI must install it; .ci/run installs the Debian package nginx')
  else t.test('nginx in front of the service', { skip: 'nginx not found; install it to run these tests: sudo apt-get install -y nginx' }, () => {})
} else {
  t.test('the stream passes through nginx unbuffered: head, heartbeats, a published event', { timeout: TIMEOUT }, async (t) => {
    const s = await build(t, { env: { HEARTBEAT_INTERVAL_MS: '50', PUBLISH_TOKEN } })
    const proxy = await startNginx(t, nginx, portOf(s.base))

    // openStream returns once the first bytes are through: a buffering proxy never gets that far.
    const stream = await openStream(t, `${proxy}/notify`, { authorization: 'Bearer user-42', 'accept-encoding': 'gzip' })
    t.equal(stream.status, 200)
    t.match(stream.headers['content-type'], /^text\/event-stream/, 'content-type kept')
    t.equal(stream.headers['content-encoding'], undefined, 'not compressed')
    t.match(stream.raw(), /^retry: \d+\n\n/, 'the stream head arrives first')
    t.same(await stream.nextComments(3), ['connected', '', ''], 'then heartbeats, one by one')

    const published = await send(`${proxy}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ recipient_id: '42', type: 'order.shipped', order: 'A-17' }),
    })
    t.equal(published.status, 202, 'POST /publish through nginx')
    const id = JSON.parse(published.body).published[0].id as string
    t.match(id, /^\d+-\d+\.[0-9a-f]{8}$/)

    const [event] = await stream.nextEvents(1)
    t.equal(event?.event, 'order.shipped', 'the event arrives while the stream is open')
    t.equal(event?.id, id)
    t.same(JSON.parse(event?.data ?? 'null'), { recipient_id: '42', type: 'order.shipped', order: 'A-17' })
    const more = stream.comments.length
    await stream.nextComments(more + 1)
    t.pass('heartbeats go on after the event')
  })

  t.test('a client that stops reading is still seen by the service, not absorbed by nginx', { timeout: TIMEOUT }, async (t) => {
    const s = await build(t, { env: { SSE_MAX_BUFFER_BYTES: '1048576', MAX_EVENT_BYTES: '16384' } })
    const proxy = await startNginx(t, nginx, portOf(s.base))
    const hub = s.app.notifier.hub
    // A raw socket through nginx that sends its request and then never reads.
    const stalled = connect(portOf(proxy), '127.0.0.1')
    t.teardown(() => stalled.destroy())
    await once(stalled, 'connect')
    const opened = once(hub, 'open')
    stalled.write('GET /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-slow\r\n\r\n')
    await opened
    stalled.pause()

    let reason: string | undefined
    hub.on('close', (stream: SseStream, why: string) => {
      if (stream.userId === 'slow') reason = why
    })
    // Socket buffers on the way absorb several MB; a buffering nginx would take
    // up to 1 GB. Publish up to 75 MB, stopping as soon as the service gives up,
    // in bursts (150 KB) well below SSE_MAX_BUFFER_BYTES, so that only a reader
    // that has stopped can push the service past it.
    const payload = 'x'.repeat(15_000)
    const publisher = s.redis.client()
    for (let burst = 0; burst < 500 && reason === undefined; burst++) {
      const p = publisher.pipeline()
      for (let i = 0; i < 10; i++) p.publish('notifications', JSON.stringify({ recipient_id: 'slow', payload }))
      await p.exec()
    }
    t.equal(reason, 'slow', 'closed as a slow consumer: nginx did not buffer the stream')
  })

  t.test('ordinary routes through nginx', { timeout: TIMEOUT }, async (t) => {
    const s = await build(t, { env: { PUBLISH_TOKEN } })
    const proxy = await startNginx(t, nginx, portOf(s.base))
    t.equal((await send(`${proxy}/healthz`)).status, 200, '/healthz')
    const ready = await send(`${proxy}/readyz`)
    t.equal(ready.status, 200, '/readyz')
    t.match(JSON.parse(ready.body), { status: 'ready', broker: 'redis' })
    const refused = await send(`${proxy}/publish`, {
      method: 'POST',
      headers: { authorization: 'Bearer wrong', 'content-type': 'application/json' },
      body: '{"recipient_id":"1"}',
    })
    t.equal(refused.status, 401, "the service's own answers pass through")
    t.match(JSON.parse(refused.body), { code: 'NOTIFY_PUBLISH_UNAUTHORIZED' })
    const missing = await send(`${proxy}/nope`)
    t.equal(missing.status, 404)
    t.match(JSON.parse(missing.body), { code: 'NOTIFY_NOT_FOUND' }, 'unknown paths reach the service')
    const noToken = await send(`${proxy}/notify`)
    t.equal(noToken.status, 401, '/notify without a token: 401 from the service')
    t.match(noToken.headers['www-authenticate'], /^Bearer /)
  })

  t.test('a stream the service ends: the client keeps its connection to nginx for the next request', { timeout: TIMEOUT }, async (t) => {
    // Ended by auth-expired (jwt mode) without racing the wall clock: the token
    // is valid for 10 minutes, and the hub's clock moves past its exp only when
    // the test says so (test/keep-alive.test.ts does the same without nginx).
    const secret = 'nginx-test-secret-long-enough-for-hs256'
    const exp = Math.floor(Date.now() / 1000) + 600
    let now = (): number => exp * 1000 - 250
    const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_SECRET: secret }, deps: { now: () => now() } })
    let serviceConnections = 0
    s.app.server.on('connection', () => serviceConnections++)
    const proxy = await startNginx(t, nginx, portOf(s.base))
    const token = await new SignJWT({ sub: 'alice', exp }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret))
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    const get = async (path: string, headers: Record<string, string> = {}) => {
      const req = request(`${proxy}${path}`, { agent, headers })
      req.end()
      const [res] = (await once(req, 'response')) as [IncomingMessage]
      // The agent detaches a kept-alive socket from the response once it is read.
      const socket = res.socket
      res.setEncoding('utf8')
      const body = (async () => {
        let text = ''
        for await (const chunk of res) text += chunk
        return text
      })()
      return { res, socket, body }
    }

    const stream = await get('/notify', { authorization: `Bearer ${token}`, accept: 'text/event-stream' })
    t.equal(stream.res.statusCode, 200)
    t.equal(stream.res.headers.connection, 'keep-alive', "the service's Connection: close is hop-by-hop: nginx keeps the client's connection")
    now = () => exp * 1000 + 1
    t.match(await stream.body, /event: auth-expired\ndata: \{\}\n\n$/, 'ended by the service, and the end passed on')

    const health = await get('/healthz')
    t.equal(health.res.statusCode, 200, 'the next request through the same agent')
    await health.body
    t.equal(health.socket, stream.socket, 'on the same client connection to nginx')
    t.equal(serviceConnections, 2, "to the service on a new connection: nginx did not reuse the stream's")
  })

  t.test('TRUST_PROXY set to the proxy: the service sees the client address, not a forged one', { timeout: TIMEOUT }, async (t) => {
    // Three loopback addresses stand for three hosts: the browser connects from
    // 127.0.0.1, nginx reaches the service from 127.0.0.3.
    const clientIp = async (env: Record<string, string>) => {
      const s = await build(t, { env })
      const proxy = await startNginx(t, nginx, portOf(s.base), '127.0.0.3')
      const answer = await send(`${proxy}/healthz?probe`, { headers: { 'x-forwarded-for': '198.51.100.7' } })
      t.equal(answer.status, 200)
      const line = s.logs.find((l) => l.msg === 'incoming request' && (l.req as { url?: string }).url === '/healthz?probe')
      return (line?.req as { remoteAddress?: string } | undefined)?.remoteAddress
    }
    t.equal(await clientIp({ TRUST_PROXY: '127.0.0.3' }), '127.0.0.1', "the address nginx saw; the client's own X-Forwarded-For entry is not believed")
    t.equal(await clientIp({}), '127.0.0.3', 'without TRUST_PROXY: the proxy address, shared by every client')
  })

  t.test('forwards Host, X-Forwarded-For and X-Forwarded-Proto over kept-alive HTTP/1.1', { timeout: TIMEOUT }, async (t) => {
    // A plain upstream that records what nginx sends it.
    const seen: { url: string; httpVersion: string; headers: IncomingHttpHeaders }[] = []
    let connections = 0
    const upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? '', httpVersion: req.httpVersion, headers: req.headers })
      res.end('ok')
    })
    upstream.on('connection', () => connections++)
    const proxy = await startNginx(t, nginx, await listenLoopback(t, upstream))

    await send(`${proxy}/notify?lastEventId=1-0.abc`, { headers: { host: 'notify.example.test', 'x-forwarded-for': '198.51.100.7' } })
    await send(`${proxy}/readyz`, { headers: { host: 'notify.example.test' } })
    t.equal(seen.length, 2)
    t.equal(seen[0]?.url, '/notify?lastEventId=1-0.abc', 'path and query unchanged')
    t.equal(seen[1]?.url, '/readyz')
    for (const r of seen) {
      t.equal(r.httpVersion, '1.1', `${r.url}: HTTP/1.1 to the upstream`)
      t.equal(r.headers.connection, undefined, `${r.url}: no Connection: close`)
      t.equal(r.headers.host, 'notify.example.test', `${r.url}: Host forwarded`)
      t.equal(r.headers['x-forwarded-proto'], 'http', `${r.url}: X-Forwarded-Proto`)
    }
    t.equal(seen[0]?.headers['x-forwarded-for'], '198.51.100.7, 127.0.0.1', 'X-Forwarded-For: the client address appended')
    t.equal(seen[1]?.headers['x-forwarded-for'], '127.0.0.1')
    t.equal(connections, 1, 'one upstream connection, kept alive between requests')
  })
}
