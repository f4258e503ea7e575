// Log safety: tokens never reach the logs, whatever their source and whatever
// becomes of them (accepted, refused, malformed, upstream failing or slow).
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { redactUrl } from '../src/logger.js'
import { build, type Built } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { openStream } from './helpers/sse.js'

// Distinctive tokens, so a leak cannot be mistaken for anything else in the logs.
const T = {
  header: 'goodTokHdr7f3a9c1eZQ',
  cookie: 'goodTokCookieb81dZQ',
  query: 'goodTokQueryd92eZQ',
  rejectedHeader: 'rejectedTok5a5aZQ',
  rejectedQuery: 'rejectedTokQ6b6bZQ',
  failing: 'failTok77c1ZQ',
  slow: 'slowTok88d2ZQ',
  malformedCookie: 'bad$SecretTok99ZQ',
  repeated: 'dupTokQuery11ZQ',
  basic: 'c2VjcmV0QmFzaWMxMlpR',
}

/** The upstream: goodTok* is alice, failTok* answers 500, slowTok* never answers, the rest is refused. */
function upstreamRules(token: string, _req: IncomingMessage, res: ServerResponse): void {
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  if (token.startsWith('goodTok')) return json(200, { user_id: 'alice' })
  if (token.startsWith('failTok')) return json(500, { error: 'down' })
  if (token.startsWith('slowTok')) return // answered by the service's timeout
  json(401, { error: 'unknown' })
}

async function buildLogged(t: Parameters<typeof build>[0]): Promise<Built> {
  // slowTok* is never answered, so any timeout ends it; the good tokens must be
  // answered within it, also on a loaded machine (200 ms was not always enough).
  const s = await build(t, { env: { AUTH_ALLOW_QUERY_TOKEN: 'true', LOG_LEVEL: 'trace', AUTH_UPSTREAM_TIMEOUT_MS: '2000' } })
  s.upstream.handle(upstreamRules)
  return s
}

const tokenValues = (): string[] => Object.values(T)

t.test('no token appears in the logs, from any source or outcome', async (t) => {
  const s = await buildLogged(t)
  const url = `${s.base}/notify`
  const statuses: Record<string, number> = {}
  const open = async (name: string, target: string, headers: Record<string, string> = {}) => {
    const stream = await openStream(t, target, headers)
    statuses[name] = stream.status
    stream.close()
  }
  await open('header', url, { authorization: `Bearer ${T.header}` })
  await open('cookie', url, { cookie: `theme=dark; access_token=${T.cookie}` })
  await open('query', `${url}?lang=en&access_token=${T.query}`)
  await open('rejected header', url, { authorization: `bearer ${T.rejectedHeader}` })
  await open('rejected query', `${url}?access_token=${T.rejectedQuery}`)
  await open('upstream failing', url, { authorization: `Bearer ${T.failing}` })
  await open('upstream slow', url, { cookie: `access_token=${T.slow}` })
  await open('malformed cookie', url, { cookie: `access_token=${T.malformedCookie}` })
  await open('repeated query', `${url}?access_token=${T.repeated}&access_token=${T.repeated}`)
  await open('basic', url, { authorization: `Basic ${T.basic}` })
  // Close the app so every response has finished and its log line is written.
  await hubSize(s.app.notifier.hub, 0)
  await s.app.close()

  t.same(statuses, {
    header: 200,
    cookie: 200,
    query: 200,
    'rejected header': 401,
    'rejected query': 401,
    'upstream failing': 503,
    'upstream slow': 503,
    'malformed cookie': 401,
    'repeated query': 401,
    basic: 401,
  }, 'every path was exercised')
  t.ok(s.upstream.calls.has(T.slow) && s.upstream.calls.has(T.failing), 'the failing upstream paths were reached')

  const raw = s.rawLogs()
  t.ok(s.logs.length > 20, `the logs were captured (${s.logs.length} lines)`)
  t.match(raw, /upstream/, 'upstream failures were logged')
  for (const token of tokenValues()) t.notOk(raw.includes(token), `${token} is not in the logs`)
  // Base64 of the Basic credentials' content should not be there decoded either.
  t.notOk(raw.includes(Buffer.from(T.basic, 'base64').toString()), 'decoded Basic credentials')

  const urls = s.logs.map((l) => (l.req as { url?: string } | undefined)?.url).filter((u) => u !== undefined)
  t.ok(urls.includes('/notify?lang=en&access_token=[REDACTED]'), 'the logged url shows the query token redacted')
  t.ok(urls.includes(`/notify?access_token=[REDACTED]&access_token=[REDACTED]`), 'every repetition is redacted')
  t.notOk(urls.some((u) => /access_token=(?!\[REDACTED\])/.test(u as string)), 'no url with an unredacted access_token')
})

// Fastify's default 404 would log and echo the raw url; the app's own handler redacts it.
t.test('a token query on an unknown route or method is not logged', async (t) => {
  const s = await buildLogged(t)
  const secret = 'goodTok404LeakZQ'
  const head = await fetch(`${s.base}/notify?access_token=${secret}`, { method: 'HEAD' })
  const get = await fetch(`${s.base}/notify/?access_token=${secret}`)
  t.equal(head.status, 404)
  t.equal(get.status, 404)
  t.notMatch(await get.text(), secret, 'not echoed in the 404 body')
  await s.app.close()
  t.match(s.rawLogs(), /not found/, 'the 404s were logged')
  t.notOk(s.rawLogs().includes(secret), 'not in the logs')
})

// The query parser decodes `access%5Ftoken` to `access_token`, so redaction must too.
t.test('a percent-encoded access_token name is redacted too', async (t) => {
  const s = await buildLogged(t)
  const secret = 'goodTokEncodedZQ'
  const stream = await openStream(t, `${s.base}/notify?access%5Ftoken=${secret}`)
  t.equal(stream.status, 200, 'the service accepts the encoded name')
  stream.close()
  await hubSize(s.app.notifier.hub, 0)
  await s.app.close()
  t.notOk(s.rawLogs().includes(secret), 'not in the logs')
})

t.test('redactUrl', async (t) => {
  const cases: [string, string][] = [
    ['/notify?access_token=abc', '/notify?access_token=[REDACTED]'],
    ['/notify?x=1&access_token=abc&y=2', '/notify?x=1&access_token=[REDACTED]&y=2'],
    ['/notify?access_token=a&access_token=b', '/notify?access_token=[REDACTED]&access_token=[REDACTED]'],
    ['/notify?token=abc', '/notify?token=[REDACTED]'],
    ['/notify?ACCESS_TOKEN=abc', '/notify?ACCESS_TOKEN=[REDACTED]'],
    ['/notify?Token=abc&TOKEN=def', '/notify?Token=[REDACTED]&TOKEN=[REDACTED]'],
    ['/notify?access_token=abc#frag', '/notify?access_token=[REDACTED]#frag'],
    ['/notify?access_token=', '/notify?access_token=[REDACTED]'],
    ['/notify?access_token=a%20b%26c', '/notify?access_token=[REDACTED]'],
    ['/notify', '/notify'],
    ['/notify?lang=en', '/notify?lang=en'],
    ['/notify?my_access_token=abc', '/notify?my_access_token=abc'],
    ['/notify?tokens=3', '/notify?tokens=3'],
    ['/notify?access_token=abc;def&x=1', '/notify?access_token=[REDACTED]&x=1'],
    ['/notify?access+token=abc', '/notify?access+token=abc'],
  ]
  for (const [input, expected] of cases) t.equal(redactUrl(input), expected, input)
  t.equal(redactUrl('/notify?access%5Ftoken=abc'), '/notify?access%5Ftoken=[REDACTED]', 'encoded name')
  // The regex is global: calling it again on other input must not be affected by lastIndex.
  t.equal(redactUrl('/a?token=1'), '/a?token=[REDACTED]')
  t.equal(redactUrl('/a?token=1'), '/a?token=[REDACTED]')
})
