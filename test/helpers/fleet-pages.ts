// What users run against the fleet: Chromium pages through nginx, either with
// the client helper (/client.js; a user's tabs share one stream) or with the
// plain EventSource script of the README ("Plain EventSource"); each page
// records every notification with the time it showed it. And a publisher that
// POSTs one event for every user at a steady rate through nginx, retrying a
// refused or failed call with its Idempotency-Key, as the README tells
// publishers to.
import type { Browser, Page } from 'playwright-core'
import { type Route, servePage, userContext } from './browser.js'
import { PUBLISH_TOKEN } from './fleet.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** One notification as a page showed it: its number and when (ms since the epoch). */
export interface Shown {
  n: number
  at: number
}

/** What each page exposes (both kinds). */
interface PageRecord {
  shown: Shown[]
  resyncs: number
  /** The helper: state is `live`. Plain: open from a stored id, or told its position. */
  live: boolean
  max: number
}

// Query: svc (nginx's origin), user. The helper with its production defaults
// (backoff 1 s to 30 s), so the gaps measured are those users get.
const HELPER_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>helper</title>
<script type="module">
  const q = new URLSearchParams(location.search)
  window.shown = []
  window.resyncs = 0
  window.live = false
  window.max = 0
  const { connectNotify } = await import(q.get('svc') + '/client.js')
  connectNotify({
    url: q.get('svc') + '/notify',
    user: q.get('user'),
    types: ['note'],
    onEvent: (m) => {
      window.shown.push({ n: m.data.n, at: Date.now() })
      window.max = Math.max(window.max, m.data.n)
    },
    onState: (s) => { window.live = s === 'live' },
    onResync: () => { window.resyncs++ },
  })
</script>
`

// The README's plain EventSource script, recording instead of rendering.
const PLAIN_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>plain</title>
<script>
  const svc = new URLSearchParams(location.search).get('svc')
  window.shown = []
  window.resyncs = 0
  window.live = false
  window.max = 0
  function connect() {
    const last = localStorage.getItem('notify:lastEventId')
    const url = svc + '/notify' + (last ? '?lastEventId=' + encodeURIComponent(last) : '')
    const es = new EventSource(url, { withCredentials: true })
    const remember = (e) => e.lastEventId && localStorage.setItem('notify:lastEventId', e.lastEventId)
    es.addEventListener('note', (e) => {
      remember(e)
      const n = JSON.parse(e.data).n
      window.shown.push({ n, at: Date.now() })
      window.max = Math.max(window.max, n)
    })
    // Live once nothing can be missed: a stream resuming from an id gets
    // everything after it; a first one, once the service says where it stands.
    es.addEventListener('open', () => { if (last) window.live = true })
    es.addEventListener('position', (e) => {
      remember(e)
      window.live = true
    })
    es.addEventListener('resync', () => { window.resyncs++ })
    es.onerror = () => {
      window.live = false
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 5000)
    }
  }
  connect()
</script>
`

export interface FleetPage {
  /** "h1 tab 2", "p1 page 1". */
  name: string
  page: Page
}

export interface PagePlan {
  /** Users with the client helper, and how many tabs each opens. */
  helper: { [user: string]: number }
  /** Users with the plain EventSource script, and how many pages each opens. */
  plain: { [user: string]: number }
}

/** Serves both pages on one origin (/helper, /plain); returns that origin. */
export function servePages(t: Teardown): Promise<string> {
  const plain: Route = (req, res) => {
    if (!req.url?.startsWith('/plain')) return false
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(PLAIN_PAGE)
    return true
  }
  return servePage(t, HELPER_PAGE, plain)
}

/** Opens every page of `plan`, each user in a browser context of their own (cookie `demo-<user>`), and waits until each is live. */
export async function openPages(t: Teardown, browser: Browser, origin: string, svc: string, plan: PagePlan): Promise<FleetPage[]> {
  const pages: FleetPage[] = []
  const kinds: Array<['helper' | 'plain', { [user: string]: number }]> = [['helper', plan.helper], ['plain', plan.plain]]
  for (const [kind, users] of kinds) {
    for (const [user, count] of Object.entries(users)) {
      const context = await userContext(t, browser, `demo-${user}`)
      for (let i = 1; i <= count; i++) {
        const page = await context.newPage()
        await page.goto(`${origin}/${kind}?svc=${encodeURIComponent(svc)}&user=${user}`)
        pages.push({ name: `${user} ${kind === 'helper' ? 'tab' : 'page'} ${i}`, page })
      }
    }
  }
  await Promise.all(pages.map((p) => p.page.waitForFunction(() => (window as unknown as PageRecord).live)))
  return pages
}

/** Resolves once every page has shown notification `n` (or a later one). */
export async function allShown(pages: FleetPage[], n: number): Promise<void> {
  await Promise.all(pages.map((p) => p.page.waitForFunction((x) => (window as unknown as PageRecord).max >= x, n, { timeout: 60_000 })))
}

export async function recordOf(p: FleetPage): Promise<{ shown: Shown[]; resyncs: number }> {
  return p.page.evaluate(() => {
    const w = window as unknown as PageRecord
    return { shown: w.shown, resyncs: w.resyncs }
  })
}

/** The longest time without a notification that overlaps [from, to], on one page. */
export function worstGap(shown: Shown[], from: number, to: number): number {
  let worst = 0
  for (let i = 1; i < shown.length; i++) {
    const a = (shown[i - 1] as Shown).at
    const b = (shown[i] as Shown).at
    if (b >= from && a <= to) worst = Math.max(worst, b - a)
  }
  return worst
}

export interface Publisher {
  /** Resolves with the number of the first event sent after this call, once it is acknowledged. */
  next(): Promise<number>
  /** Stops; resolves with the number of the last event acknowledged. */
  stop(): Promise<number>
  /** Calls that did not answer 202 (then retried with the same key). */
  readonly retries: number
  /** Longest time between two acknowledgements. */
  readonly worstStallMs: number
}

/** POSTs {recipient_ids: users, type: 'note', n} through `base` every `intervalMs`, one call at a time, n = 1, 2, ... */
export function startPublisher(base: string, users: string[], intervalMs: number): Publisher {
  let n = 0
  let stopped = false
  let retries = 0
  let lastAck = 0
  let worstStallMs = 0
  const waiters: Array<{ after: number; resolve: (n: number) => void; reject: (err: unknown) => void }> = []
  const send = async (k: number): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${base}/publish`, {
          method: 'POST',
          headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, 'content-type': 'application/json', 'idempotency-key': `fleet-${k}` },
          body: JSON.stringify({ recipient_ids: users, type: 'note', n: k }),
        })
        await res.body?.cancel()
        if (res.status === 202) return
      } catch {}
      retries++
      if (attempt === 100) throw new Error(`event ${k}: not acknowledged after 100 retries`)
      // The pace of a publisher's retry, not a synchronisation.
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now()
      const k = ++n
      await send(k)
      const now = Date.now()
      if (lastAck > 0) worstStallMs = Math.max(worstStallMs, now - lastAck)
      lastAck = now
      for (const w of waiters.filter((x) => x.after <= started)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(k)
      }
      const wait = started + intervalMs - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    }
    return n
  })()
  loop.catch((err: unknown) => {
    for (const w of waiters.splice(0)) w.reject(err)
  })
  return {
    next: () => new Promise((resolve, reject) => waiters.push({ after: Date.now(), resolve, reject })),
    stop: async () => {
      stopped = true
      return loop
    },
    get retries() {
      return retries
    },
    get worstStallMs() {
      return worstStallMs
    },
  }
}
