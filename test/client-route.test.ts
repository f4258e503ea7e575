// GET /client.js serves the compiled helper; the CORS answer exposes Retry-After to it.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { build } from './helpers/app.js'
import { bearer } from './helpers/probe.js'

const ORIGIN = 'https://app.example.com'

t.test('/client.js: the compiled helper, revalidated by ETag, readable by listed origins', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { CORS_ORIGINS: ORIGIN } })
  const res = await fetch(`${s.base}/client.js`, { headers: { origin: ORIGIN } })
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal(res.headers.get('cache-control'), 'no-cache')
  t.equal(res.headers.get('access-control-allow-origin'), ORIGIN, 'a module script from another origin needs CORS')
  const body = await res.text()
  t.match(body, /export function connectNotify\(/)
  t.notMatch(body, /sourceMappingURL/, 'no reference to a map that is not served')
  t.notMatch(body, /^import /m, 'one file: nothing to import')

  const etag = res.headers.get('etag') as string
  t.match(etag, /^"[\w-]{22}"$/)
  const again = await fetch(`${s.base}/client.js`, { headers: { 'if-none-match': etag } })
  t.equal(again.status, 304)
  t.equal(await again.text(), '')

  const other = await fetch(`${s.base}/client.js`, { headers: { origin: 'https://evil.example' } })
  t.equal(other.headers.get('access-control-allow-origin'), null, 'an unlisted origin cannot load it as a module')
})

t.test('a refusal exposes Retry-After to the page (the helper waits that long)', async (t) => {
  const s = await build(t, { broker: 'embedded', env: { CORS_ORIGINS: ORIGIN } })
  const res = await fetch(`${s.base}/notify`, { headers: { origin: ORIGIN, ...bearer('status-503') } })
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '5')
  t.match(res.headers.get('access-control-expose-headers') ?? '', /(^|, )Retry-After(,|$)/i)
})

t.test('the package exports the same helper, typed, as notify-sse/client', async (t) => {
  // A variable, not a literal: the type check runs before the build that creates dist/.
  const specifier = 'notify-sse/client'
  const url = import.meta.resolve(specifier)
  t.match(url, /\/dist\/client\/notify-client\.js$/)
  const { connectNotify } = (await import(specifier)) as { connectNotify: unknown }
  t.type(connectNotify, 'function')
  const types = readFileSync(new URL('notify-client.d.ts', url), 'utf8')
  for (const name of ['connectNotify', 'NotifyOptions', 'NotifyMessage', 'NotifyState', 'NotifyClient']) {
    t.match(types, new RegExp(`export (declare )?(function|interface|type) ${name}\\b`), `${name} is declared`)
  }
})
