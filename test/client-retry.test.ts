// The client helper's pure parts, in Node: backoff, Retry-After, duplicates.
import t from 'tap'
import {
  backoffDelay,
  type NotifyMessage,
  parseRetryAfter,
  RecentEvents,
  retryDelay,
} from '../src/client/notify-client.js'

const backoff = { initialMs: 1000, maxMs: 30_000 }

t.test('backoff doubles per attempt up to the cap, with equal jitter', async (t) => {
  const low = () => 0
  const high = () => 1
  t.same([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, backoff, high)), [1000, 2000, 4000, 8000, 16000, 30000, 30000])
  t.same([0, 1, 2, 5].map((n) => backoffDelay(n, backoff, low)), [500, 1000, 2000, 15000], 'never below half')
  t.equal(backoffDelay(10_000, backoff, high), 30_000, 'huge attempt counts stay finite')
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3, backoff)))
  t.ok(spread.size > 40, 'clients dropped together do not come back together')
})

t.test('Retry-After: seconds or an HTTP date', async (t) => {
  const now = Date.parse('2026-11-21T10:00:00Z')
  t.equal(parseRetryAfter('5', now), 5000)
  t.equal(parseRetryAfter(' 10 ', now), 10_000)
  t.equal(parseRetryAfter('Sat, 21 Nov 2026 10:00:30 GMT', now), 30_000)
  t.equal(parseRetryAfter('Sat, 21 Nov 2026 09:00:00 GMT', now), 0, 'a past date: now')
  t.equal(parseRetryAfter(null, now), null)
  t.equal(parseRetryAfter('soon', now), null)
  t.equal(parseRetryAfter('-3', now), null)
})

t.test('the wait is never shorter than Retry-After, and spreads above it', async (t) => {
  t.equal(retryDelay(0, backoff, null, () => 1), 1000, 'no Retry-After: the backoff')
  t.equal(retryDelay(0, backoff, 5000, () => 0), 5000)
  t.equal(retryDelay(0, backoff, 5000, () => 1), 6250, 'up to a quarter more')
  t.equal(retryDelay(5, backoff, 5000, () => 1), 30_000, 'a longer backoff wins')
})

t.test('recent events: copies dropped, what came after an id, bounded', async (t) => {
  const m = (id: string | null, n: number): NotifyMessage<number> => ({ type: 'note', id, data: n })
  const recent = new RecentEvents<number>(3)
  t.ok(recent.add(m('a', 1)))
  t.notOk(recent.add(m('a', 1)), 'a copy')
  t.ok(recent.add(m(null, 2)) && recent.add(m(null, 2)), 'events without id are never copies')
  for (const id of ['b', 'c', 'd']) recent.add(m(id, 0))
  t.same(recent.after('b')?.map((x) => x.id), ['c', 'd'])
  t.same(recent.after('d'), [], 'nothing after the newest')
  t.equal(recent.after('a'), null, 'forgotten beyond the limit')
  t.ok(recent.add(m('a', 1)), 'a forgotten id is new again')
})
