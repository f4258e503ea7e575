// The fleet scenario, run on single Redis and on the local Cluster
// (test/fleet.test.ts): three instances behind nginx,
// Chromium pages of several users (the client helper, several tabs each; the
// plain EventSource script, several pages), events published at a steady rate
// through nginx, then a rolling deploy (each instance in turn SIGTERM, started
// again, ready) and a SIGKILL of the instance holding the most streams.
// Synchronised on events only: processes exited, /readyz, notifications shown.
import type { Test } from 'tap'
import { launchBrowser } from './browser.js'
import { type Fleet, startFleet } from './fleet.js'
import type { Access } from './fleet-nginx.js'
import { allShown, type FleetPage, openPages, recordOf, servePages, startPublisher, worstGap } from './fleet-pages.js'
import { metricsOf } from './metrics.js'
import { waitFor } from './wait.js'

const HELPER_USERS = { h1: 3, h2: 2, h3: 2 }
const PLAIN_USERS = { p1: 2, p2: 2 }
const USERS = [...Object.keys(HELPER_USERS), ...Object.keys(PLAIN_USERS)]
// 10 publishes a second, each to every user (50 events a second): the default
// HISTORY_SIZE (100) covers 10 s without a stream, well above a plain
// EventSource's reconnect (SSE_RETRY_MS, 3 s) even on a loaded machine.
const INTERVAL_MS = 100

/** An instance stopped by the test: from `at` it is no longer live. */
interface Stop {
  port: number
  at: number
}

/**
 * The /notify requests that did not land on a live instance: refused (not 200),
 * or answered by an instance that was already stopping (a stream that ended
 * without a later stop of its instance to end it). Streams still open are not
 * in the log yet: they landed well.
 */
function badLandings(accesses: Access[], stops: Stop[]): string[] {
  const bad: string[] = []
  // A request nginx read a moment before the signal may reach the instance a moment after.
  const SLACK_MS = 50
  for (const a of accesses.filter((x) => x.path === '/notify')) {
    const port = a.upstreams.at(-1)
    const stop = stops.find((s) => s.port === port && s.at >= a.start - SLACK_MS)
    if (a.status !== 200) bad.push(`${a.status} at ${a.start.toFixed(0)} via ${a.upstreams}`)
    else if (stop === undefined || a.end < stop.at) bad.push(`a stream on :${port} from ${a.start.toFixed(0)} ended at ${a.end.toFixed(0)}, not by a stop`)
  }
  return bad
}

/** /notify requests read in [from, to]: how many, and the most within one second. */
function connectRate(accesses: Access[], from: number, to: number): { count: number; perSecond: number; peak: number } {
  const starts = accesses.filter((a) => a.path === '/notify' && a.start >= from && a.start <= to).map((a) => a.start)
  const buckets = new Map<number, number>()
  for (const s of starts) buckets.set(Math.floor(s / 1000), (buckets.get(Math.floor(s / 1000)) ?? 0) + 1)
  return { count: starts.length, perSecond: starts.length / ((to - from) / 1000), peak: Math.max(0, ...buckets.values()) }
}

async function worstGapOf(pages: FleetPage[], from: number, to: number): Promise<{ ms: number; page: string }> {
  let worst = { ms: 0, page: '' }
  for (const p of pages) {
    const ms = worstGap((await recordOf(p)).shown, from, to)
    if (ms > worst.ms) worst = { ms, page: p.name }
  }
  return worst
}

async function streamsOn(fleet: Fleet): Promise<number[]> {
  return Promise.all(fleet.instances.map(async (i) => (await metricsOf(i.base)).value('notify_streams_open') ?? 0))
}

export async function fleetScenario(t: Test, redis: 'single' | 'cluster'): Promise<void> {
  const origin = await servePages(t)
  const fleet = await startFleet(t, { redis, pageOrigin: origin })
  const browser = await launchBrowser(t)
  const pages = await openPages(t, browser, origin, fleet.base, { helper: HELPER_USERS, plain: PLAIN_USERS })
  const streams = Object.keys(HELPER_USERS).length + Object.values(PLAIN_USERS).reduce((a, b) => a + b, 0)
  const spread = await streamsOn(fleet)
  t.equal(spread.reduce((a, b) => a + b, 0), streams, `${pages.length} pages hold ${streams} streams (one per helper user), spread [${spread}]`)
  t.ok(spread.filter((n) => n > 0).length >= 2, 'nginx spreads the streams over the instances')

  const publisher = startPublisher(fleet.direct, USERS, INTERVAL_MS)
  t.teardown(() => publisher.stop().catch(() => {}))
  await allShown(pages, await publisher.next())
  const stops: Stop[] = []

  // Rolling deploy: each instance in turn drained and started again. The next
  // one goes only once every page shows an event published after the restart.
  const deployFrom = Date.now()
  const steps: string[] = []
  for (const instance of fleet.instances) {
    const at = Date.now()
    stops.push({ port: instance.port, at })
    t.equal(await instance.stop('SIGTERM'), 0, `${instance.name}: SIGTERM, drained, exit 0`)
    const exited = Date.now()
    await instance.start()
    const ready = Date.now()
    await allShown(pages, await publisher.next())
    steps.push(`${instance.name} exited ${exited - at} ms, ready ${ready - exited} ms, every page on a newer event ${Date.now() - ready} ms`)
  }
  const deployTo = Date.now()
  const deployGap = await worstGapOf(pages, deployFrom, deployTo)

  // SIGKILL, no drain: the instance holding the most streams.
  const before = await streamsOn(fleet)
  const most = before.indexOf(Math.max(...before))
  const victim = fleet.instances[most] as Fleet['instances'][number]
  t.ok((before[most] ?? 0) > 0, `${victim.name} holds ${before[most]} of the streams [${before}]`)
  const killedAt = Date.now()
  stops.push({ port: victim.port, at: killedAt })
  t.equal(await victim.stop('SIGKILL'), null, `${victim.name}: SIGKILL`)
  const after = await publisher.next()
  await allShown(pages, after)
  // When each page showed the first event published after the kill (so, in
  // order, everything before it): by kind, as their reconnect delays differ.
  const caughtUp = { helper: 0, plain: 0 }
  for (const p of pages) {
    const at = (await recordOf(p)).shown.find((s) => s.n === after)?.at ?? Number.POSITIVE_INFINITY
    const kind = p.name.includes(' tab ') ? 'helper' : 'plain'
    caughtUp[kind] = Math.max(caughtUp[kind], at - killedAt)
  }
  t.comment(
    `${redis}: SIGKILL of ${victim.name} holding ${before[most]} of ${streams} streams: every page caught up within ${Math.max(caughtUp.helper, caughtUp.plain)} ms ` +
      `(client helper ${caughtUp.helper} ms, plain EventSource ${caughtUp.plain} ms)`,
  )
  await victim.start()
  await allShown(pages, await publisher.next())

  const last = await publisher.stop()
  await allShown(pages, last)
  const expected = Array.from({ length: last }, (_, i) => i + 1)
  for (const p of pages) {
    const { shown, resyncs } = await recordOf(p)
    t.same(shown.map((s) => s.n), expected, `${p.name}: all ${last} events, once each, in order`)
    t.equal(resyncs, 0, `${p.name}: no resync`)
  }
  // nginx logs a request when it ends: close the pages, and every stream is in the log.
  const open = (await streamsOn(fleet)).reduce((a, b) => a + b, 0)
  const closedAt = Date.now()
  await browser.close()
  const accesses = await waitFor(
    async (reason) => {
      const all = await fleet.nginx.accesses()
      const ended = all.filter((a) => a.path === '/notify' && a.end >= closedAt).length
      reason(`${ended} of ${open} streams logged`)
      return ended >= open && all
    },
    { timeoutMs: 10_000, what: 'nginx logging the streams the pages closed' },
  )
  for (const i of fleet.instances) stops.push({ port: i.port, at: closedAt })
  const bad = badLandings(accesses, stops)
  t.same(bad, [], 'every connect through nginx landed on a live instance')
  if (bad.length > 0) {
    t.comment(`stops: ${stops.map((s) => `:${s.port} at ${s.at}`).join(', ')}`)
    t.comment(`nginx said:\n${(await fleet.nginx.complaints()).slice(-40).join('\n')}`)
  }
  const rate = connectRate(accesses, deployFrom, deployTo)
  t.comment(
    `${redis}: rolling deploy of 3 instances in ${((deployTo - deployFrom) / 1000).toFixed(1)} s; worst gap a page saw ${deployGap.ms} ms (${deployGap.page}); ` +
      `${rate.count} connects, ${rate.perSecond.toFixed(1)}/s on average, peak ${rate.peak} in one second (${steps.join('; ')})`,
  )
  t.comment(`${redis}: publisher: ${last} calls acknowledged, ${publisher.retries} retried, longest time between two acknowledgements ${publisher.worstStallMs} ms`)
}
