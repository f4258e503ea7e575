// A real browser (Debian's Chromium via playwright-core) as in production: the
// page is on the app's origin, the service on another origin of the same site,
// and the user's token is an HttpOnly SameSite cookie sent by
// `new EventSource(url, { withCredentials: true })`.
import type { Browser, BrowserContext, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { build } from './helpers/app.js'
import { launchBrowser, servePage as serve, userContext as context } from './helpers/browser.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** What the page exposes to the test. */
interface Probe {
  opened: boolean
  /** readyState at each `error` event. */
  errors: number[]
  received: { type: string; data: string }[]
}

// The page reads the service URL from its own query string, opens the stream
// with credentials and records what happens.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>notifications</title>
<ul id="log"></ul>
<script>
  window.opened = false
  window.errors = []
  window.received = []
  const es = new EventSource(new URLSearchParams(location.search).get('svc'), { withCredentials: true })
  es.addEventListener('open', () => { window.opened = true })
  es.addEventListener('error', () => { window.errors.push(es.readyState) })
  for (const type of ['order.shipped', 'marker']) {
    es.addEventListener(type, (e) => {
      window.received.push({ type, data: e.data })
      const li = document.createElement('li')
      li.textContent = type + ' ' + e.data
      document.getElementById('log').append(li)
    })
  }
</script>
`

const servePage = (t: Teardown): Promise<string> => serve(t, PAGE)

let browser: Browser
t.before(async () => {
  browser = await launchBrowser(t)
})

/** A browser context whose only credential is `token` in an HttpOnly cookie for localhost. */
const userContext = (t: Teardown, token: string): Promise<BrowserContext> => context(t, browser, token)

/** Opens the page of `pageOrigin`, pointed at the service's /notify on localhost. */
async function openPage(context: BrowserContext, pageOrigin: string, servicePort: number): Promise<Page> {
  const page = await context.newPage()
  const svc = `http://localhost:${servicePort}/notify`
  await page.goto(`${pageOrigin}/?svc=${encodeURIComponent(svc)}`)
  return page
}

/** Starts the service with `pageOrigin` as its only CORS origin; returns it and its port. */
async function service(t: Teardown, pageOrigin: string) {
  const s = await build(t, { env: { CORS_ORIGINS: pageOrigin, HOST: '127.0.0.1' } })
  return { s, port: Number(new URL(s.base).port) }
}

const probe = (page: Page): Promise<Probe> =>
  page.evaluate(() => {
    const w = window as unknown as Probe
    return { opened: w.opened, errors: w.errors, received: w.received }
  })

/** Waits for the page's EventSource to settle: `open` or a first `error`, whichever comes first. */
async function settled(page: Page): Promise<Probe> {
  await page.waitForFunction(() => {
    const w = window as unknown as Probe
    return w.opened || w.errors.length > 0
  })
  return probe(page)
}

/** Waits for `open`; fails at once (not at a timeout) if the stream errors instead. */
async function opened(t: Test, page: Page, who: string): Promise<void> {
  const state = await settled(page)
  t.ok(state.opened, `${who}: EventSource open fired`)
  t.same(state.errors, [], `${who}: no error before open`)
  if (!state.opened) throw new Error(`${who}: EventSource failed to open`)
}

t.test('a page on the app origin receives its user event through a credentialed EventSource', async (t) => {
  const pageOrigin = await servePage(t)
  const { s, port } = await service(t, pageOrigin)
  const context = await userContext(t, 'user-alice')
  const page = await openPage(context, pageOrigin, port)

  await opened(t, page, 'alice')
  t.equal(s.app.notifier.hub.users, 1, 'the stream is registered for the cookie user')
  t.equal(await page.evaluate(() => document.cookie), '', 'the token cookie is HttpOnly, invisible to the page')

  const event = { recipient_id: 'alice', type: 'order.shipped', order: 'A-17' }
  t.equal(await s.publish(event), 1, 'the service is subscribed')
  await page.waitForFunction(() => (window as unknown as Probe).received.length > 0)

  const { received, errors } = await probe(page)
  t.same(received.map((r) => r.type), ['order.shipped'])
  t.same(JSON.parse(received[0]?.data ?? ''), event)
  t.same(errors, [], 'no error event on the way')
  t.match(await page.textContent('#log'), /order\.shipped .*"order":"A-17"/)
})

t.test('a page on a refused origin cannot read the stream', async (t) => {
  const allowed = await servePage(t)
  const refused = await servePage(t)
  const { s, port } = await service(t, allowed)
  // The server still authenticates and opens the stream; the browser withholds it.
  const served: string[] = []
  s.app.notifier.hub.on('open', (stream: { userId: string }) => served.push(stream.userId))
  const context = await userContext(t, 'user-alice')
  const page = await openPage(context, refused, port)

  // Settles on the first error (or, if CORS let it through, on open: a failure, not a timeout).
  const state = await settled(page)
  t.same(served, ['alice'], 'the request carried the cookie and was answered: the refusal is CORS, not auth')
  t.equal(state.opened, false, 'open never fired')
  t.equal(state.errors[0], 2, 'readyState CLOSED: the browser does not retry')
  t.same(state.received, [])
})

t.test("bob's browser does not receive alice's event", async (t) => {
  const pageOrigin = await servePage(t)
  const { s, port } = await service(t, pageOrigin)
  const alice = await openPage(await userContext(t, 'user-alice'), pageOrigin, port)
  const bob = await openPage(await userContext(t, 'user-bob'), pageOrigin, port)
  await opened(t, alice, 'alice')
  await opened(t, bob, 'bob')
  t.equal(s.app.notifier.hub.users, 2)

  await s.publish({ recipient_id: 'alice', type: 'order.shipped', order: 'A-17' })
  // Published last on the same channel: when bob has it, alice's event has been routed.
  await s.publish({ recipient_id: 'bob', type: 'marker' })
  await bob.waitForFunction(() => (window as unknown as Probe).received.some((r) => r.type === 'marker'))
  await alice.waitForFunction(() => (window as unknown as Probe).received.length > 0)

  t.same((await probe(bob)).received.map((r) => JSON.parse(r.data)), [{ recipient_id: 'bob', type: 'marker' }])
  t.same((await probe(alice)).received.map((r) => JSON.parse(r.data)), [
    { recipient_id: 'alice', type: 'order.shipped', order: 'A-17' },
  ])
})
