// CORS over raw HTTP: the allow-list, credentials, preflight, and that the
// headers survive the route's hijack (the hub copies reply headers into writeHead).
import { once } from 'node:events'
import { type IncomingHttpHeaders, request } from 'node:http'
import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'
import { build } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

const APP = 'http://app.example.test'
const OTHER = 'http://other.example.test:8443'
const CORS_ORIGINS = `${APP},${OTHER}`
const EVIL = 'http://evil.example.test'

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** One plain HTTP request over a fresh socket, answered in full. */
async function send(url: string, method: string, headers: Record<string, string>): Promise<Answer> {
  const req = request(url, { method, headers, agent: false })
  req.end()
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
  res.setEncoding('utf8')
  let body = ''
  for await (const chunk of res) body += chunk
  return { status: res.statusCode ?? 0, headers: res.headers, body }
}

function corsHeaders(headers: IncomingHttpHeaders): string[] {
  return Object.keys(headers).filter((h) => h.startsWith('access-control-'))
}

t.test('an allowed origin gets its exact origin and credentials on the event stream', async (t) => {
  const s = await build(t, { env: { CORS_ORIGINS } })
  for (const origin of [APP, OTHER]) {
    const stream = await openStream(t, `${s.base}/notify`, { origin, authorization: 'Bearer user-alice' })
    t.equal(stream.status, 200, origin)
    t.match(stream.headers['content-type'], /^text\/event-stream/)
    t.equal(stream.headers['access-control-allow-origin'], origin, 'the exact origin, never *')
    t.equal(stream.headers['access-control-allow-credentials'], 'true')
    t.match(stream.headers.vary, /\bOrigin\b/i, 'caches keep answers for different origins apart')
    // The head came from the hijacked reply: the stream is live, not a Fastify answer.
    await s.publish({ recipient_id: 'alice', type: 'ping', origin })
    const evs = await stream.nextEvents(1)
    t.equal(evs[0]?.event, 'ping')
    stream.close()
  }
})

t.test('an allowed origin gets its CORS headers on the 401 answer too', async (t) => {
  // Without them the browser hides the 401 from the page, which then cannot
  // tell "log in again" from a network failure.
  const s = await build(t, { env: { CORS_ORIGINS } })
  const credentials: Record<string, string>[] = [{}, { authorization: 'Bearer nobody' }]
  for (const headers of credentials) {
    const answer = await openStream(t, `${s.base}/notify`, { origin: APP, ...headers })
    t.equal(answer.status, 401)
    t.match(answer.headers['www-authenticate'], /^Bearer/)
    t.equal(answer.headers['access-control-allow-origin'], APP)
    t.equal(answer.headers['access-control-allow-credentials'], 'true')
    t.match(JSON.parse(answer.body), { statusCode: 401 })
  }
})

t.test('a refused origin gets no access-control-allow-origin', async (t) => {
  const s = await build(t, { env: { CORS_ORIGINS } })
  // Near misses: another host, another port, another scheme, a suffix trick, "null".
  const refused = [EVIL, 'http://app.example.test:8080', 'https://app.example.test', 'http://app.example.test.evil.test', 'null']
  for (const origin of refused) {
    const stream = await openStream(t, `${s.base}/notify`, { origin, authorization: 'Bearer user-alice' })
    t.equal(stream.status, 200, `${origin}: the server still answers; the browser withholds it`)
    t.equal(stream.headers['access-control-allow-origin'], undefined, `${origin}: no allow-origin`)
    stream.close()
    const denied = await openStream(t, `${s.base}/notify`, { origin })
    t.equal(denied.status, 401)
    t.equal(denied.headers['access-control-allow-origin'], undefined, `${origin}: no allow-origin on 401`)
  }
})

t.test('preflight: allowed origin succeeds, refused origin gets no allow-origin', async (t) => {
  const s = await build(t, { env: { CORS_ORIGINS } })
  const preflight = (origin: string) =>
    send(`${s.base}/notify`, 'OPTIONS', {
      origin,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'last-event-id',
    })

  const ok = await preflight(OTHER)
  t.ok(ok.status >= 200 && ok.status < 300, `preflight status ${ok.status}`)
  t.equal(ok.headers['access-control-allow-origin'], OTHER)
  t.equal(ok.headers['access-control-allow-credentials'], 'true')
  t.match(ok.headers['access-control-allow-methods'], /\bGET\b/)

  const refused = await preflight(EVIL)
  t.equal(refused.headers['access-control-allow-origin'], undefined)
})

t.test('with CORS_ORIGINS unset there are no CORS headers at all', async (t) => {
  const s = await build(t)
  const stream = await openStream(t, `${s.base}/notify`, { origin: APP, authorization: 'Bearer user-alice' })
  t.equal(stream.status, 200)
  t.same(corsHeaders(stream.headers), [], 'none on the event stream')
  stream.close()
  const denied = await openStream(t, `${s.base}/notify`, { origin: APP })
  t.equal(denied.status, 401)
  t.same(corsHeaders(denied.headers), [], 'none on the 401')
  const preflight = await send(`${s.base}/notify`, 'OPTIONS', { origin: APP, 'access-control-request-method': 'GET' })
  t.same(corsHeaders(preflight.headers), [], 'none on a preflight')
})

t.test('loadConfig refuses a wildcard or a non-origin in CORS_ORIGINS', async (t) => {
  const base = { REDIS_URL: 'redis://127.0.0.1:6379', AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:1/me' }
  t.same(loadConfig({ ...base, CORS_ORIGINS: ` ${APP} , ${OTHER} ` }).corsOrigins, [APP, OTHER], 'a good list parses')
  for (const bad of ['*', `${APP},*`, 'http://a.test/path', 'http://a.test/', 'app.example.test']) {
    const err = t.throws(() => loadConfig({ ...base, CORS_ORIGINS: bad }), `CORS_ORIGINS=${JSON.stringify(bad)} is refused`)
    t.type(err, ConfigError)
    t.match((err as Error).message, /CORS_ORIGINS/, 'the message names the variable')
  }
})
