// A first visit can resume: a stream that joins without an id is told where it
// stands (a `position` event: its `id:` updates a plain EventSource's last event
// id; the client helper stores it), so if it drops before its first stored
// event, what was published meanwhile is replayed when it comes back, once and
// in order, even though the history was empty when it joined. In a real
// browser, with a plain EventSource and with the client helper, on both brokers.
import type { Browser, Page } from 'playwright-core'
import t from 'tap'
import type { SseStream } from '../src/sse/stream.js'
import { type Built, build } from './helpers/app.js'
import { launchBrowser, servePage, userContext } from './helpers/browser.js'

interface Seen {
  received: { type: string; id: string | null; n?: number }[]
  opens: number
}

// A plain EventSource, as the README shows it, reconnecting by itself.
const PLAIN = `<!doctype html>
<meta charset="utf-8">
<script>
  window.received = []
  window.opens = 0
  const es = new EventSource(new URLSearchParams(location.search).get('svc'), { withCredentials: true })
  es.addEventListener('open', () => { window.opens++ })
  es.addEventListener('note', (e) => window.received.push({ type: e.type, id: e.lastEventId, n: JSON.parse(e.data).n }))
</script>
`

// The client helper, with a first reconnect delay long enough for the test to publish before it.
const HELPER = `<!doctype html>
<meta charset="utf-8">
<script type="module">
  const svc = new URLSearchParams(location.search).get('svc')
  window.received = []
  window.opens = 0
  const { connectNotify } = await import(new URL(svc).origin + '/client.js')
  connectNotify({
    url: svc,
    types: ['note'],
    backoff: { initialMs: 1500, maxMs: 1500 },
    onEvent: (m) => window.received.push({ type: m.type, id: m.id, n: m.data.n }),
    onState: (s) => { if (s === 'live') window.opens++ },
  })
</script>
`

let browser: Browser
t.before(async () => {
  browser = await launchBrowser(t)
})

const seen = (page: Page): Promise<Seen> =>
  page.evaluate(() => {
    const w = window as unknown as Seen
    return { received: w.received, opens: w.opens }
  })

for (const broker of ['redis', 'embedded'] as const) {
  for (const [name, html] of [['a plain EventSource', PLAIN], ['the client helper', HELPER]] as const) {
    t.test(`${broker}, ${name}: dropped before any event, it gets what was published meanwhile, once, in order`, async (t) => {
      const origin = await servePage(t, html)
      // retry: 1500 ms for the plain EventSource's own reconnect (the helper has its backoff).
      const s: Built = await build(t, { broker, env: { CORS_ORIGINS: origin, SSE_RETRY_MS: '1500' } })
      const hub = s.app.notifier.hub
      const streams: SseStream[] = []
      hub.on('open', (stream: SseStream) => streams.push(stream))
      const page = await (await userContext(t, browser, 'user-alice')).newPage()
      const svc = `${s.base.replace('127.0.0.1', 'localhost')}/notify`
      await page.goto(`${origin}/?svc=${encodeURIComponent(svc)}`)
      await page.waitForFunction(() => (window as unknown as Seen).opens === 1)
      // The first stream, positioned at an empty history, ends before any event.
      const first = streams[0] as SseStream
      const closed = new Promise((resolve) => hub.once('close', resolve))
      first.socket?.destroy()
      await closed
      const replayedBefore = s.app.notifier.resumer.stats.replayed
      const published = await s.store([1, 2].map((n) => ({ recipient_id: 'alice', type: 'note', n })))
      await page.waitForFunction(() => (window as unknown as Seen).received.length >= 2)
      const [live] = await s.store({ recipient_id: 'alice', type: 'note', n: 3 })
      await page.waitForFunction(() => (window as unknown as Seen).received.length >= 3)
      const after = await seen(page)
      t.same(
        after.received.map((e) => [e.n, e.id]),
        [[1, published[0]?.id], [2, published[1]?.id], [3, live?.id]],
        'each event exactly once, in order',
      )
      t.equal(after.opens, 2, 'one reconnect')
      t.equal(s.app.notifier.resumer.stats.replayed - replayedBefore, 2, 'the two came from history: it resumed from its position')
      t.equal(s.app.notifier.resumer.stats.resyncs.gone, 0, 'no resync')
    })
  }
}
