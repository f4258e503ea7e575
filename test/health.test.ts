// Probes and the catalog's 404.
import t from 'tap'
import { build } from './helpers/app.js'

t.test('/healthz and /readyz when all is well', async (t) => {
  const s = await build(t)
  const health = await s.app.inject('/healthz')
  t.equal(health.statusCode, 200)
  t.same(health.json(), { status: 'ok' })
  const ready = await s.app.inject('/readyz')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready', broker: 'redis', redis: 'up', closing: false })
})

t.test('unknown routes get a JSON 404 from the error catalog', async (t) => {
  const s = await build(t)
  const res = await s.app.inject('/nope?x=1')
  t.equal(res.statusCode, 404)
  t.match(res.json(), { statusCode: 404, code: 'NOTIFY_NOT_FOUND', error: 'Not Found', message: 'Route GET:/nope?x=1 not found' })
  const post = await s.app.inject({ method: 'POST', url: '/notify' })
  t.equal(post.statusCode, 404, 'only GET opens a stream')
})
