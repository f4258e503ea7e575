// The client helper (/client.js) in a real browser: pages on the app's origin
// import it from the service (another origin of the same site), as the README
// shows, and record what it hands them.
import { EventEmitter, once } from 'node:events'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { SignJWT } from 'jose'
import t from 'tap'
import { createPublisher } from '../src/publisher.js'
import type { SseStream } from '../src/sse/stream.js'
import { type Built, build } from './helpers/app.js'
import { launchBrowser, type Route, servePage, userContext } from './helpers/browser.js'
import { hubSize } from './helpers/hub.js'
import { metricsOf } from './helpers/metrics.js'
import { freePort, startRedis } from './helpers/redis.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** What each page records (see PAGE). */
interface Seen {
  received: { type: string; id: string | null; data: { n?: number } }[]
  states: string[]
  resyncs: number
  refreshes: number
  leader: boolean
}

// Query: svc (the service's origin), user. Short backoff so tests do not wait
// on the production defaults; Retry-After is honoured as the service sends it.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>client helper</title>
<script type="module">
  const q = new URLSearchParams(location.search)
  const svc = q.get('svc')
  window.received = []
  window.states = []
  window.resyncs = 0
  window.refreshes = 0
  const { connectNotify } = await import(svc + '/client.js')
  window.client = connectNotify({
    url: svc + '/notify',
    user: q.get('user') ?? '',
    types: ['note'],
    backoff: { initialMs: Number(q.get('initialMs') ?? 100), maxMs: Number(q.get('maxMs') ?? 1000) },
    onEvent: (m) => window.received.push(m),
    onState: (s) => window.states.push(s),
    onResync: () => { window.resyncs++ },
    onAuthExpired: async () => {
      window.refreshes++
      return (await fetch('/refresh', { method: 'POST' })).ok
    },
  })
</script>
`

let browser: Browser
t.before(async () => {
  browser = await launchBrowser(t)
})

async function service(t: Teardown, pageOrigin: string, opts: Parameters<typeof build>[1] = {}): Promise<Built> {
  return build(t, { ...opts, env: { CORS_ORIGINS: pageOrigin, ...opts.env } })
}

async function openPage(context: BrowserContext, pageOrigin: string, s: Built, user = '', query = ''): Promise<Page> {
  const page = await context.newPage()
  const svc = s.base.replace('127.0.0.1', 'localhost')
  await page.goto(`${pageOrigin}/?svc=${encodeURIComponent(svc)}&user=${encodeURIComponent(user)}${query}`)
  return page
}

/** The page server, a service that lists it in CORS_ORIGINS, and alice's browser profile. */
async function aliceSetup(t: Teardown) {
  const origin = await servePage(t, PAGE)
  const s = await service(t, origin)
  const context = await userContext(t, browser, 'user-alice')
  const open = async (): Promise<Page> => {
    const page = await openPage(context, origin, s, 'alice')
    await stateIs(page, 'live')
    return page
  }
  return { s, open }
}

const seen = (page: Page): Promise<Seen> =>
  page.evaluate(() => {
    const w = window as unknown as Seen & { client?: { leader: boolean } }
    return { received: w.received, states: w.states, resyncs: w.resyncs, refreshes: w.refreshes, leader: w.client?.leader ?? false }
  })

/** Waits until the page's current state is `state`. */
async function stateIs(page: Page, state: string): Promise<void> {
  await page.waitForFunction((s) => (window as unknown as Seen).states.at(-1) === s, state)
}

/** Waits until the page holds `count` notifications; returns their `n`s. */
async function received(page: Page, count: number): Promise<(number | undefined)[]> {
  await page.waitForFunction((c) => (window as unknown as Seen).received.length >= c, count)
  return (await seen(page)).received.map((m) => m.data.n)
}

const note = (to: string, n: number) => ({ recipient_id: to, type: 'note', n })

t.test('two users in two browsers: each page gets only its own notifications', async (t) => {
  const origin = await servePage(t, PAGE)
  const s = await service(t, origin)
  const alice = await openPage(await userContext(t, browser, 'user-alice'), origin, s, 'alice')
  const bob = await openPage(await userContext(t, browser, 'user-bob'), origin, s, 'bob')
  await stateIs(alice, 'live')
  await stateIs(bob, 'live')

  await s.store([note('alice', 1), note('bob', 2), note('alice', 3)])
  t.same(await received(alice, 2), [1, 3], "alice's page: her two, in order")
  t.same(await received(bob, 1), [2], "bob's page: his one")
  // The last event went to alice after bob's: had bob's page got any of hers, it would show by now.
  t.equal((await seen(bob)).received.length, 1, 'nothing of alice reached bob')
  const a = await seen(alice)
  t.ok(a.received.every((m) => typeof m.id === 'string' && m.type === 'note'), 'stored events carry their ids and type')
  t.same(a.states, ['connecting', 'live'])
  t.ok(a.leader, 'a lone tab holds its own connection')
})

t.test('the service restarts (Redis) while events are published: the page shows each once, in order', async (t) => {
  const origin = await servePage(t, PAGE)
  const redis = await startRedis(t)
  const port = await freePort()
  const env = { PORT: String(port) }
  const first = await service(t, origin, { redis, env })
  const page = await openPage(await userContext(t, browser, 'user-alice'), origin, first, 'alice')
  await stateIs(page, 'live')
  await first.store(note('alice', 1))
  t.same(await received(page, 1), [1])

  await first.app.close()
  await stateIs(page, 'reconnecting')
  // Published while no instance runs: stored in Redis only.
  const client = redis.client()
  t.teardown(() => client.quit())
  const publisher = createPublisher({ redis: client })
  for (const n of [2, 3, 4]) await publisher.publish(note('alice', n))

  const second = await service(t, origin, { redis, env })
  await page.waitForFunction(() => (window as unknown as Seen).states.at(-1) === 'live')
  await second.store(note('alice', 5))
  t.same(await received(page, 5), [1, 2, 3, 4, 5], 'all five, once, in order')
  t.equal(second.app.notifier.hub.countOf('alice'), 1)
  const { states, resyncs } = await seen(page)
  t.same(states.slice(0, 3), ['connecting', 'live', 'reconnecting'])
  t.equal(resyncs, 0, 'no resync: the missed events were in history')
})

t.test('the auth upstream answers 503 for a while: the helper honours Retry-After and recovers', async (t) => {
  const origin = await servePage(t, PAGE)
  const s = await service(t, origin)
  let down = true
  const calls: number[] = []
  const called = new EventEmitter()
  const callsReached = async (n: number) => {
    while (calls.length < n) await once(called, 'call')
  }
  s.upstream.handle((token, _req, res) => {
    calls.push(performance.now())
    called.emit('call')
    res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(down ? { error: 'maintenance' } : { user_id: token.replace(/^user-/, '') }))
  })
  const page = await openPage(await userContext(t, browser, 'user-alice'), origin, s, 'alice')
  // The EventSource is refused, then the helper asks once for the status.
  await callsReached(2) // the first attempt and its probe
  await stateIs(page, 'reconnecting')
  // Retry-After: 5 (NOTIFY_AUTH_UNAVAILABLE): the next attempt waits at least that long.
  await callsReached(3)
  const gap = (calls[2] as number) - (calls[1] as number)
  t.ok(gap >= 4900, `the retry waited for Retry-After (${gap.toFixed(0)} ms >= 5000 ms)`)
  down = false
  await stateIs(page, 'live')
  await s.store(note('alice', 1))
  t.same(await received(page, 1), [1], 'delivered after recovery')
  t.equal(s.app.notifier.hub.countOf('alice'), 1, 'one stream: the probe that found the service back was closed')
})

t.test('three tabs of one user share one stream; closing the leader hands over without losing events', async (t) => {
  const { s, open } = await aliceSetup(t)
  const tabs = [await open(), await open(), await open()]
  t.equal(s.app.notifier.hub.countOf('alice'), 1, 'one stream server-side')
  const metrics = await metricsOf(s.base)
  t.equal(metrics.value('notify_streams_open'), 1, '/metrics says one stream open')
  const leaders = (await Promise.all(tabs.map(seen))).map((x) => x.leader)
  t.same(leaders.filter(Boolean).length, 1, 'exactly one tab holds it')

  await s.store([note('alice', 1), note('alice', 2)])
  for (const tab of tabs) t.same(await received(tab, 2), [1, 2], 'every tab shows both')

  const leader = tabs[leaders.indexOf(true)] as Page
  const others = tabs.filter((tab) => tab !== leader)
  await leader.close()
  // Published during the handover: the new leader resumes from the last event it saw.
  await s.store([note('alice', 3), note('alice', 4)])
  for (const tab of others) t.same(await received(tab, 4), [1, 2, 3, 4], 'each remaining tab: all four, once, in order')
  await s.store(note('alice', 5))
  for (const tab of others) t.same(await received(tab, 5), [1, 2, 3, 4, 5])
  const after = await Promise.all(others.map(seen))
  t.equal(after.filter((x) => x.leader).length, 1, 'one new leader')
  await hubSize(s.app.notifier.hub, 1) // the old leader's stream is closed
})

t.test('a tab that reloads while another holds the stream gets what it missed from that tab', async (t) => {
  const { s, open } = await aliceSetup(t)
  const leader = await open()
  const follower = await open()
  t.ok((await seen(leader)).leader && !(await seen(follower)).leader, 'the first tab leads')
  await s.store(note('alice', 1))
  t.same(await received(follower, 1), [1])
  const url = follower.url()

  await follower.goto('about:blank')
  await s.store([note('alice', 2), note('alice', 3)])
  t.same(await received(leader, 3), [1, 2, 3])
  await follower.goto(url)
  await stateIs(follower, 'live')
  await s.store(note('alice', 4))
  t.same(await received(follower, 3), [2, 3, 4], 'the two published during the reload, then live')
  t.equal(s.app.notifier.hub.countOf('alice'), 1, 'still one stream')
})

t.test('auth-expired: the refresh hook runs, the stream resumes, nothing is lost', async (t) => {
  const secret = 'a-test-secret-of-at-least-32-characters!'
  const key = new TextEncoder().encode(secret)
  const mint = (exp: number) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(exp).sign(key)
  // The token is checked on connect by jose (the real clock); the stream ends
  // at its exp by the hub's clock (AppDeps.now). A token that really expires
  // within seconds races the test: under CPU load the page may connect after
  // exp (a 401, no first `live`), or the stream may end before the first event
  // arrives (no id to resume from: the next event is lost, see the README).
  // So the token is valid for minutes, and the hub's clock stands still just
  // short of its exp until the test lets it run: meanwhile the hub rechecks the
  // deadline every 250 ms, and ends the stream at the first check after.
  const exp = Math.floor(Date.now() / 1000) + 600
  let now = (): number => exp * 1000 - 250
  // The page's own origin refreshes the cookie, as an app's endpoint would. Its
  // answer is held, so that an event can be published while no stream is open.
  const refreshAsked = new EventEmitter()
  let answerRefresh = (): void => {}
  const answered = new Promise<void>((resolve) => {
    answerRefresh = resolve
  })
  const refresh: Route = async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/refresh') return false
    refreshAsked.emit('asked')
    await answered
    // Valid past the hub's clock, which runs on from the first token's exp.
    res.writeHead(204, { 'set-cookie': `access_token=${await mint(exp + 600)}; Path=/; HttpOnly; SameSite=Strict` })
    res.end()
    return true
  }
  const origin = await servePage(t, PAGE, refresh)
  const s = await service(t, origin, { env: { AUTH_MODE: 'jwt', JWT_SECRET: secret }, deps: { now: () => now() } })
  const hub = s.app.notifier.hub
  const page = await openPage(await userContext(t, browser, await mint(exp)), origin, s, 'alice')
  await stateIs(page, 'live')
  await s.store(note('alice', 1))
  t.same(await received(page, 1), [1], 'the page has an id to resume from')

  // The clock reaches exp: the service sends auth-expired and ends the stream.
  const closed = once(hub, 'close') as Promise<[SseStream, string]>
  const asked = once(refreshAsked, 'asked')
  const from = Date.now()
  now = () => exp * 1000 + (Date.now() - from)
  t.equal((await closed)[1], 'expired', 'ended at exp')
  await asked
  t.equal(hub.countOf('alice'), 0, 'no stream while the cookie is refreshed')
  await s.store(note('alice', 2))
  answerRefresh()
  await page.waitForFunction(() => (window as unknown as Seen).states.lastIndexOf('live') > 1)
  await s.store(note('alice', 3))
  t.same(await received(page, 3), [1, 2, 3], 'the one published meanwhile too, once, in order')
  const after = await seen(page)
  t.equal(after.refreshes, 1, 'the hook ran once')
  t.same(after.states, ['connecting', 'live', 'reconnecting', 'live'])
})

t.test('a fresh page load resumes from the stored id; an unknown id makes it resync', async (t) => {
  const { s, open } = await aliceSetup(t)
  const page = await open()
  await s.store(note('alice', 1))
  t.same(await received(page, 1), [1])
  const url = page.url()

  await page.goto('about:blank')
  await hubSize(s.app.notifier.hub, 0) // the old page is gone
  await s.store([note('alice', 2), note('alice', 3)])
  await page.goto(url)
  await stateIs(page, 'live')
  t.same(await received(page, 2), [2, 3], 'the new page gets what was missed between pages, and only that')
  t.equal((await seen(page)).resyncs, 0)

  // A stored id the service does not know (another deployment's, a flushed Redis).
  await page.evaluate(() => {
    for (const store of [localStorage, sessionStorage]) {
      for (const k of Object.keys(store)) if (k.endsWith(':lastEventId')) store.setItem(k, '1-0.00000000')
    }
  })
  await page.reload()
  await page.waitForFunction(() => (window as unknown as Seen).resyncs === 1)
  const after = await seen(page)
  t.same(after.states, ['connecting', 'live', 'resynced'], 'state says resynced')
  await s.store(note('alice', 4))
  t.same(await received(page, 1), [4])
  await stateIs(page, 'live')
})

t.test('back online: the helper reconnects at once instead of sitting out its backoff', async (t) => {
  const origin = await servePage(t, PAGE)
  const s = await service(t, origin)
  const context = await userContext(t, browser, 'user-alice')
  // A first wait of 30-60 s: far longer than this test may take.
  const streams: SseStream[] = []
  s.app.notifier.hub.on('open', (stream: SseStream) => streams.push(stream))
  const page = await openPage(context, origin, s, 'alice', '&initialMs=60000&maxMs=60000')
  await stateIs(page, 'live')
  await s.store(note('alice', 1))
  t.same(await received(page, 1), [1])
  // Offline emulation fails new requests but leaves an open one alone: the
  // network "drops" the stream as well.
  await context.setOffline(true)
  streams[0]?.socket?.destroy()
  await stateIs(page, 'reconnecting')
  await s.store(note('alice', 2))
  const since = performance.now()
  await context.setOffline(false)
  await stateIs(page, 'live')
  const ms = performance.now() - since
  t.ok(ms < 10_000, `live again ${ms.toFixed(0)} ms after going online`)
  t.same(await received(page, 2), [1, 2], 'with what was published while offline')
})
