// `npm run demo` (demo/server.ts) in a real browser: users sign in through the
// page's form, send each other notifications through its send form, and the
// page shows what the service's client helper hands it. The demo routes are
// also checked with fetch: validation, sessions, and that the refresh token
// can never open a stream.
import { once } from 'node:events'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import t from 'tap'
import { type Demo, startDemo } from '../demo/server.js'
import { type AppDeps, buildApp } from '../src/app.js'
import type { Config } from '../src/config.js'
import type { MemoryBroker } from '../src/broker/memory-broker.js'
import { START } from '../src/history/event-id.js'
import { launchBrowser } from './helpers/browser.js'
import { openStream } from './helpers/sse.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

let browser: Browser
t.before(async () => {
  browser = await launchBrowser(t)
})

async function demo(t: Teardown): Promise<Demo> {
  const d = await startDemo({ port: 0, logLevel: 'silent' })
  t.teardown(() => d.close())
  return d
}

interface DemoPage {
  page: Page
  /** Uncaught exceptions and Content-Security-Policy violations seen by the page. */
  problems: string[]
}

/** A fresh browser profile (cookie jar, storage) with the demo page open in it. */
async function open(t: Teardown, d: Demo, context?: BrowserContext): Promise<DemoPage> {
  if (context === undefined) {
    context = await browser.newContext()
    t.teardown(() => context?.close())
  }
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(err.message))
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy/i.test(m.text())) problems.push(m.text())
  })
  await page.goto(d.url)
  return { page, problems }
}

async function signIn(page: Page, user: string): Promise<void> {
  await page.fill('#user', user)
  await page.click('#sign-in button[type=submit]')
  await page.waitForSelector('#state[data-state="live"]')
}

/** Sends through the page's form; returns the event id the server answered with. */
async function send(page: Page, to: string, type: string, text: string): Promise<string> {
  await page.fill('#to', to)
  await page.selectOption('#type', type)
  await page.fill('#text', text)
  const [res] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/demo/send'),
    page.click('#send button[type=submit]'),
  ])
  if (res.status() !== 202) throw new Error(`/demo/send answered ${res.status()}: ${await res.text()}`)
  return ((await res.json()) as { id: string }).id
}

const items = (page: Page) =>
  page.$$eval('#notifications li', (lis) =>
    lis.map((li) => ({ id: (li as HTMLElement).dataset.id, type: (li as HTMLElement).dataset.type, text: li.textContent ?? '' })),
  )

t.test('bob sends to alice through the page; only alice sees it; sign-out closes the stream', async (t) => {
  const d = await demo(t)
  const hub = d.app.notifier.hub
  const alice = await open(t, d)
  const bob = await open(t, d)
  await signIn(alice.page, 'alice')
  await signIn(bob.page, 'bob')
  t.equal(hub.size, 2, 'one stream each')
  t.equal(hub.countOf('alice'), 1)
  t.equal(await alice.page.textContent('#me'), 'alice')
  t.equal(await alice.page.textContent('#state'), 'live')
  t.equal(await alice.page.textContent('#leader'), 'this tab holds the connection')
  t.equal(await alice.page.inputValue('#to'), 'alice', 'the send form defaults to yourself')

  // Event text is user input: it must be shown as text, never parsed as HTML.
  const text = 'Order A-17 shipped <img src=x onerror="window.pwned=1">'
  const id = await send(bob.page, 'alice', 'order.shipped', text)
  t.match(id, /^\d+-\d+\.[0-9a-f]{8}$/, 'stored in history: the event has an id')
  const li = await alice.page.waitForSelector(`#notifications li[data-id="${id}"]`)
  t.equal(await li.getAttribute('data-type'), 'order.shipped')
  t.match(await li.textContent(), text)
  t.match(await li.textContent(), /from bob/)
  t.equal(await alice.page.$$eval('#notifications img', (imgs) => imgs.length), 0, 'no markup from event data')
  t.equal(await alice.page.evaluate(() => (window as { pwned?: number }).pwned), undefined)

  // Published after alice's event: once bob has his own, alice's has been routed.
  const marker = await send(bob.page, 'bob', 'job.finished', 'export done')
  await bob.page.waitForSelector(`#notifications li[data-id="${marker}"]`)
  t.same(
    (await items(bob.page)).map((i) => i.id),
    [marker],
    "bob's page holds only his own event",
  )
  t.same(
    (await items(alice.page)).map((i) => i.id),
    [id],
  )
  const second = await send(bob.page, 'alice', 'comment.liked', 'liked your comment')
  await alice.page.waitForSelector(`#notifications li[data-id="${second}"]`)
  t.same(
    (await items(alice.page)).map((i) => i.id),
    [second, id],
    'newest first',
  )

  // The tokens stay out of the page's reach, and out of other sites' requests.
  t.equal(await alice.page.evaluate(() => document.cookie), '', 'document.cookie is empty: the cookies are HttpOnly')
  const cookies = await alice.page.context().cookies()
  t.same(cookies.map((c) => c.name).sort(), ['access_token', 'demo_refresh'])
  for (const c of cookies) {
    t.equal(c.httpOnly, true, `${c.name} is HttpOnly`)
    t.equal(c.sameSite, 'Strict', `${c.name} is SameSite=Strict`)
    t.equal(c.path, '/', `${c.name} has Path=/`)
  }

  const closed = once(hub, 'close', { signal: AbortSignal.timeout(10_000) })
  await alice.page.click('#sign-out')
  await closed
  t.equal(hub.countOf('alice'), 0, "alice's stream is closed")
  t.equal(hub.size, 1, "bob's is still open")
  await alice.page.waitForSelector('#sign-in', { state: 'visible' })
  t.same(await alice.page.context().cookies(), [], 'both cookies are cleared')
  const closedBob = once(hub, 'close', { signal: AbortSignal.timeout(10_000) })
  await bob.page.click('#sign-out')
  await closedBob
  t.equal(hub.size, 0, 'no stream left')

  // Signed out for good: a reload shows the sign-in form again.
  await alice.page.reload()
  await alice.page.waitForSelector('#sign-in', { state: 'visible' })
  t.equal(hub.size, 0)
  t.same(alice.problems, [], 'no script errors or CSP violations in alice page')
  t.same(bob.problems, [], 'no script errors or CSP violations in bob page')
})

/**
 * Paces a demo job by hand: `steps(n)` lets it publish n steps and resolves
 * once it waits for the next one (so those n are published), or right away
 * with `wait` false (for the last steps, after which it stops asking).
 */
function pacer() {
  const waiting: (() => void)[] = []
  const arrivals: (() => void)[] = []
  const arrived = () => (waiting.length > 0 ? Promise.resolve() : new Promise<void>((resolve) => arrivals.push(resolve)))
  return {
    pace: () =>
      new Promise<void>((resolve) => {
        waiting.push(resolve)
        arrivals.shift()?.()
      }),
    async steps(n: number, wait = true): Promise<void> {
      for (let i = 0; i < n; i++) {
        await arrived()
        waiting.shift()?.()
      }
      if (wait) await arrived()
    },
  }
}

t.test('a job: its bar advances live, is right after a reload, and the steps missed meanwhile come as one', async (t) => {
  const job = pacer()
  const d = await startDemo({ port: 0, logLevel: 'silent', jobPace: job.pace })
  t.teardown(() => d.close())
  const history = () => (d.app.notifier.broker as MemoryBroker).history.read('dora', START).range.map((e) => /^data: (.*)$/m.exec(e.frame.toString())?.[1])
  const { page, problems } = await open(t, d)
  await signIn(page, 'dora')
  await page.click('#start-job')
  await job.steps(4)
  const row = '#jobs li[data-job]'
  await page.waitForSelector(`${row}[data-percent="30"]`)
  t.equal(await page.getAttribute(row, 'data-updates'), '4', 'four steps, live')
  t.equal(await page.textContent(`${row} .percent`), '30 %')
  t.same(await page.$$eval('#notifications li', (lis) => lis.length), 0, 'progress is no notification')
  t.equal(history().length, 1, 'four steps, one history entry')

  // The page goes away; three steps are published meanwhile; it comes back.
  await page.goto('about:blank')
  await job.steps(3)
  t.match(JSON.parse(history()[0] ?? '{}'), { type: 'job.progress', percent: 60 }, 'the history holds the latest step only')
  await page.goto(d.url)
  await page.waitForSelector(`${row}[data-percent="60"]`)
  t.equal(await page.getAttribute(row, 'data-updates'), '1', 'the three steps it missed came as one event: the latest')
  t.equal(await page.isHidden('#note'), true, 'no resync: the id it had was replaced, not lost')
  t.equal(await page.$$eval('#jobs li', (lis) => lis.length), 1)

  // A reload with nothing missed: the row is there at once, from the page's own state.
  await page.reload()
  await page.waitForSelector('#state[data-state="live"]')
  t.equal(await page.getAttribute(row, 'data-percent'), '60')
  t.equal(await page.getAttribute(row, 'data-updates'), null, 'nothing replayed: it was up to date')

  await job.steps(4, false)
  await page.waitForSelector(`${row}[data-done][data-percent="100"]`)
  await page.waitForSelector('#notifications li[data-type="job.finished"]')
  t.match(await page.textContent('#notifications li'), /Job .* finished/)
  t.same(history().map((data) => JSON.parse(data ?? '{}').type), ['job.progress', 'job.finished'], 'the job left two entries: its last step and its notification')
  t.same(problems, [])
})

t.test('two tabs of one user share one stream', async (t) => {
  const d = await demo(t)
  const hub = d.app.notifier.hub
  const first = await open(t, d)
  await signIn(first.page, 'carol')
  // A second tab in the same profile: signed in by its cookie, fed by the first tab.
  const second = await open(t, d, first.page.context())
  await second.page.waitForSelector('#state[data-state="live"]')
  t.equal(await second.page.textContent('#leader'), 'shared from another tab')
  t.equal(await first.page.textContent('#leader'), 'this tab holds the connection')
  t.equal(hub.countOf('carol'), 1, 'one stream for both tabs')

  const id = await send(second.page, 'carol', 'comment.liked', 'dave liked your comment')
  await first.page.waitForSelector(`#notifications li[data-id="${id}"]`)
  await second.page.waitForSelector(`#notifications li[data-id="${id}"]`)
  t.same([...first.problems, ...second.problems], [])
})

t.test('an expired access token is refreshed and the page goes live again', async (t) => {
  // The access token is checked on connect by jose (the real clock); the
  // stream is ended at its exp by the hub's clock (AppDeps.now). With a token
  // that really expired within 1 to 2 s, the wall clock decided when: under
  // CPU load the stream could end before the badge was watched (states[0] not
  // `live`), or in the middle of the last send, lost then (the page had no
  // event id to resume from, see the README). So the token lives 10 minutes,
  // and the hub's clock, given to the demo's buildApp through a mocked import
  // (startDemo takes no clock), stands still just short of the token's exp
  // until the test lets it run: the hub rechecks the deadline every 250 ms
  // or so, and ends the stream at the first check after.
  const TTL_S = 600
  let now = (): number => Date.now()
  const { startDemo: startDemoOnClock } = await t.mockImport<typeof import('../demo/server.js')>('../demo/server.js', {
    '../src/app.js': {
      buildApp: (config: Config, deps: AppDeps = {}) => buildApp(config, { ...deps, now: () => now() }),
    },
  })
  const d = await startDemoOnClock({ port: 0, logLevel: 'silent', tokenTtlS: TTL_S })
  t.teardown(() => d.close())
  const hub = d.app.notifier.hub
  const alice = await open(t, d)
  let refreshes = 0
  alice.page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/demo/refresh' && r.method() === 'POST') refreshes++
  })
  // The token the sign-in mints expires at the earliest TTL_S after this
  // second began: the clock stands 250 ms short of that (more if the sign-in
  // crosses a second: only the rechecks are further apart).
  const soonest = (Math.floor(Date.now() / 1000) + TTL_S) * 1000
  now = () => soonest - 250
  await signIn(alice.page, 'alice')
  const access = (await alice.page.context().cookies()).find((c) => c.name === 'access_token')?.value ?? ''
  const exp = (claims(access).exp as number) * 1000
  t.ok(exp >= soonest, 'the clock stands short of the exp of the token the page holds')
  // Record every state the badge shows from now on.
  await alice.page.evaluate(() => {
    const badge = document.querySelector('#state') as HTMLElement
    const w = window as unknown as { states: string[] }
    w.states = [badge.dataset.state ?? '']
    new MutationObserver(() => w.states.push(badge.dataset.state ?? '')).observe(badge, { attributeFilter: ['data-state'] })
  })
  const before = refreshes
  t.equal(hub.stats.closed.expired, 0, 'not ended before exp')

  // The clock reaches exp: the service ends the stream with auth-expired; the
  // helper calls onAuthExpired (POST /demo/refresh) and reconnects. Once ended,
  // the clock stands short of exp again: every token minted since lives on.
  const closed = once(hub, 'close') as Promise<[unknown, string]>
  hub.once('close', () => {
    now = () => exp - 250
  })
  const from = Date.now()
  now = () => exp + (Date.now() - from)
  t.equal((await closed)[1], 'expired', 'the service ended the stream at exp')
  await alice.page.waitForFunction(
    () => {
      const s = (window as unknown as { states: string[] }).states
      const at = s.indexOf('reconnecting')
      return at !== -1 && s.slice(at).includes('live')
    },
    undefined,
    { timeout: 15_000 },
  )
  t.equal(hub.stats.closed.expired, 1)
  t.equal(refreshes - before, 1, 'the page asked /demo/refresh for a new token, once')
  const states = await alice.page.evaluate(() => (window as unknown as { states: string[] }).states)
  t.equal(states[0], 'live')
  t.notOk(states.includes('closed'), `never closed: ${states.join(' > ')}`)

  // Sent after the reconnect: delivered on the new stream.
  const id = await send(alice.page, 'alice', 'job.finished', 'report ready')
  await alice.page.waitForSelector(`#notifications li[data-id="${id}"]`)
  t.equal(hub.countOf('alice'), 1, 'one stream for the one tab')
  t.same(alice.problems, [])
})

// ---- the demo routes, without a browser ------------------------------------

const json = (body: unknown, cookie?: string): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(cookie !== undefined && { cookie }) },
  body: JSON.stringify(body),
})

/** name -> value of the response's Set-Cookie headers. */
function setCookies(res: Response): Record<string, { value: string; attrs: string }> {
  const out: Record<string, { value: string; attrs: string }> = {}
  for (const line of res.headers.getSetCookie()) {
    const [pair = '', ...attrs] = line.split(';')
    const eq = pair.indexOf('=')
    out[pair.slice(0, eq).trim()] = { value: pair.slice(eq + 1), attrs: attrs.join(';') }
  }
  return out
}

async function session(d: Demo, user: string): Promise<{ access: string; refresh: string; cookie: string }> {
  const res = await fetch(new URL('/demo/session', d.url), json({ user }))
  if (res.status !== 200) throw new Error(`sign-in answered ${res.status}`)
  const c = setCookies(res)
  const access = c.access_token?.value ?? ''
  const refresh = c.demo_refresh?.value ?? ''
  return { access, refresh, cookie: `access_token=${access}; demo_refresh=${refresh}` }
}

/** Claims of a JWT, unverified. */
const claims = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>

t.test('sessions: cookies, refresh, sign-out', async (t) => {
  const d = await demo(t)
  const res = await fetch(new URL('/demo/session', d.url), json({ user: 'alice' }))
  t.equal(res.status, 200)
  t.same(await res.json(), { user: 'alice' })
  const c = setCookies(res)
  for (const name of ['access_token', 'demo_refresh']) {
    t.match(c[name]?.attrs, /HttpOnly/, `${name} HttpOnly`)
    t.match(c[name]?.attrs, /SameSite=Strict/, `${name} SameSite=Strict`)
    t.match(c[name]?.attrs, /Path=\//, `${name} Path=/`)
  }
  const access = claims(c.access_token?.value ?? '')
  t.equal(access.sub, 'alice')
  t.equal((access.exp as number) - (access.iat as number), 120, 'the access token lives 120 s by default')
  const refresh = claims(c.demo_refresh?.value ?? '')
  t.equal(refresh.sub, 'alice')
  t.equal(refresh.typ, 'demo-refresh')
  t.equal((refresh.exp as number) - (refresh.iat as number), 12 * 3600)
  const cookie = `access_token=${c.access_token?.value}; demo_refresh=${c.demo_refresh?.value}`

  t.same(await (await fetch(new URL('/demo/session', d.url), { headers: { cookie } })).json(), { user: 'alice' })
  t.equal((await fetch(new URL('/demo/session', d.url))).status, 401, 'GET /demo/session without a session')
  const refreshed = await fetch(new URL('/demo/refresh', d.url), { method: 'POST', headers: { cookie } })
  t.equal(refreshed.status, 200)
  t.same(await refreshed.json(), { user: 'alice' })
  t.equal(claims(setCookies(refreshed).access_token?.value ?? '').sub, 'alice', 'a new access token for the same user')
  t.notOk(setCookies(refreshed).demo_refresh, 'the refresh token is not reissued')
  t.equal((await fetch(new URL('/demo/refresh', d.url), { method: 'POST' })).status, 401, 'refresh without a session')
  // The access token is not a refresh token.
  const swapped = `demo_refresh=${c.access_token?.value}`
  t.equal((await fetch(new URL('/demo/refresh', d.url), { method: 'POST', headers: { cookie: swapped } })).status, 401)
  t.equal((await fetch(new URL('/demo/session', d.url), { headers: { cookie: swapped } })).status, 401)

  const out = await fetch(new URL('/demo/session', d.url), { method: 'DELETE', headers: { cookie } })
  t.equal(out.status, 204)
  const cleared = setCookies(out)
  t.equal(cleared.access_token?.value, '')
  t.match(cleared.access_token?.attrs, /Max-Age=0/)
  t.equal(cleared.demo_refresh?.value, '')
  t.match(cleared.demo_refresh?.attrs, /Max-Age=0/)
})

t.test('the refresh token never opens a stream; the access token does', async (t) => {
  const d = await demo(t)
  const hub = d.app.notifier.hub
  const { access, refresh } = await session(d, 'alice')
  const notify = new URL('/notify', d.url)

  for (const [how, headers] of [
    ['as a bearer token', { authorization: `Bearer ${refresh}` }],
    ['as the access_token cookie', { cookie: `access_token=${refresh}` }],
  ] as const) {
    const res = await fetch(notify, { headers })
    t.equal(res.status, 401, `refresh token ${how}: 401`)
    // Were it accepted, the body would be an endless stream: do not wait for it.
    if (res.status !== 401) await res.body?.cancel()
    else t.equal(((await res.json()) as { code: string }).code, 'NOTIFY_TOKEN_REJECTED')
  }
  t.equal(hub.size, 0)

  // The same request with the access token opens a stream: the 401s above are about the token.
  const stop = new AbortController()
  const opened = once(hub, 'open', { signal: AbortSignal.timeout(10_000) })
  const res = await fetch(notify, { headers: { cookie: `access_token=${access}` }, signal: stop.signal })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  await opened
  t.equal(hub.countOf('alice'), 1)
  const closed = once(hub, 'close', { signal: AbortSignal.timeout(10_000) })
  stop.abort()
  await closed
  t.equal(hub.size, 0)
})

t.test('/demo/send and /demo/session validate their input', async (t) => {
  const d = await demo(t)
  const sendUrl = new URL('/demo/send', d.url)
  const good = { to: 'bob', type: 'order.shipped', text: 'Order A-17 shipped' }

  const anonymous = await fetch(sendUrl, json(good))
  t.equal(anonymous.status, 401, 'not signed in')
  t.match(await anonymous.json(), { statusCode: 401, error: 'Unauthorized' })
  t.equal((await fetch(sendUrl, json(good, 'demo_refresh=not.a.jwt'))).status, 401, 'a bad refresh cookie')

  const { cookie } = await session(d, 'alice')
  const ok = await fetch(sendUrl, json(good, cookie))
  t.equal(ok.status, 202, 'the control: a good request is accepted')
  t.match(await ok.json(), { id: /^\d+-\d+\./ })

  const bad: [string, unknown][] = [
    ['unknown type', { ...good, type: 'invoice.ready' }],
    ['reserved type', { ...good, type: 'auth-expired' }],
    ['empty text', { ...good, text: '' }],
    ['text over 280 characters', { ...good, text: 'x'.repeat(281) }],
    ['bad recipient', { ...good, to: 'bob smith' }],
    ['recipient over 32 characters', { ...good, to: 'b'.repeat(33) }],
    ['missing text', { to: 'bob', type: 'order.shipped' }],
    ['not an object', ['bob']],
  ]
  for (const [why, body] of bad) {
    const res = await fetch(sendUrl, json(body, cookie))
    t.equal(res.status, 400, `send: ${why}`)
    t.match(await res.json(), { statusCode: 400, error: 'Bad Request', message: String })
  }
  t.equal((await fetch(sendUrl, json({ ...good, text: 'x'.repeat(280) }, cookie))).status, 202, '280 characters are fine')

  const sessionUrl = new URL('/demo/session', d.url)
  for (const user of ['', 'a b', 'a'.repeat(33), '<script>', 'ålice']) {
    const res = await fetch(sessionUrl, json({ user }))
    t.equal(res.status, 400, `sign-in as ${JSON.stringify(user)}`)
    t.notOk(setCookies(res).access_token, 'no cookie set')
  }
  t.equal((await fetch(sessionUrl, json({}))).status, 400, 'sign-in without a user')
  t.equal((await fetch(sessionUrl, json({ user: 'a'.repeat(32) }))).status, 200, '32 characters are fine')
})

t.test('what /demo/send publishes: the sender from the session, nothing else from the body', async (t) => {
  const d = await demo(t)
  const bob = await session(d, 'bob')
  const stream = await openStream(t, new URL('/notify', d.url).href, { cookie: `access_token=${bob.access}` })
  t.equal(stream.status, 200)
  const alice = await session(d, 'alice')
  // Extra fields are dropped by the route's schema (Fastify's removeAdditional), never published.
  const body = { to: 'bob', type: 'comment.liked', text: 'nice!', from: 'mallory', recipient_ids: ['carol'], sent_at: 'x' }
  const res = await fetch(new URL('/demo/send', d.url), json(body, alice.cookie))
  t.equal(res.status, 202)
  const { id } = (await res.json()) as { id: string }
  const [event] = await stream.nextEvents(1)
  t.equal(event?.event, 'comment.liked')
  t.equal(event?.id, id, 'the SSE id is the one /demo/send answered')
  const data = JSON.parse(event?.data ?? '{}') as Record<string, unknown>
  t.same(Object.keys(data).sort(), ['from', 'recipient_id', 'sent_at', 'text', 'type'])
  t.match(data, { recipient_id: 'bob', type: 'comment.liked', from: 'alice', text: 'nice!' })
  t.ok(new Date(String(data.sent_at)).getTime() > Date.now() - 60_000, 'sent_at is the server time')
  stream.close()
})

t.test('the page and its files', async (t) => {
  const d = await demo(t)
  for (const [path, type] of [
    ['/', /^text\/html/],
    ['/demo.css', /^text\/css/],
    ['/demo.js', /^text\/javascript/],
    ['/client.js', /^text\/javascript/],
  ] as const) {
    const res = await fetch(new URL(path, d.url))
    t.equal(res.status, 200, path)
    t.match(res.headers.get('content-type'), type, `${path} content-type`)
    t.equal(res.headers.get('cache-control'), 'no-cache', `${path} cache-control`)
    await res.arrayBuffer()
  }
  t.match(await (await fetch(new URL('/demo.js', d.url))).text(), "from '/client.js'", 'the page imports the service helper')
})
