// The embedded broker's history: ids, trimming, reads, expiry and the global byte bound.
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { formatEventId, parseEventId, type Position, recipientTag, START } from '../src/history/event-id.js'
import { MemoryHistory, type MemoryHistoryOptions } from '../src/broker/memory-history.js'

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  const c = { ms: start, now: () => c.ms }
  return c
}

function history(opts: Partial<MemoryHistoryOptions> & { now: () => number }) {
  return new MemoryHistory({ size: 10, ttlMs: 60_000, maxBytes: Number.MAX_SAFE_INTEGER, ...opts })
}

const positions = (h: MemoryHistory, recipient: string, from: Position | undefined = START) =>
  h.read(recipient, from).range.map((e) => e.position)

t.test('ids increase per recipient, even within one millisecond', async (t) => {
  const c = clock(5000)
  const h = history({ now: c.now })
  const a = [h.append('a', undefined, '{}'), h.append('a', undefined, '{}'), h.append('a', undefined, '{}')]
  t.same(a.map((e) => e.id), [0, 1, 2].map((seq) => formatEventId({ ms: 5000, seq }, recipientTag('a'))))
  t.same(a.map((e) => e.position), [{ ms: 5000, seq: 0 }, { ms: 5000, seq: 1 }, { ms: 5000, seq: 2 }])

  // Another recipient in the same millisecond has its own sequence and its own tag.
  const b = h.append('b', undefined, '{}')
  t.equal(b.id, formatEventId({ ms: 5000, seq: 0 }, recipientTag('b')))

  // The clock moves on: seq restarts at 0.
  c.ms = 5001
  t.same(h.append('a', undefined, '{}').position, { ms: 5001, seq: 0 })
  // The clock goes back: the id still increases, on the last id's millisecond.
  c.ms = 4000
  t.same(h.append('a', undefined, '{}').position, { ms: 5001, seq: 1 })
  t.same(h.append('a', undefined, '{}').position, { ms: 5001, seq: 2 })

  for (const e of [...a, b]) t.ok(parseEventId(e.id).ok, `${e.id} parses as an event id`)
})

t.test('the stored frame carries id, event name and data', async (t) => {
  const c = clock()
  const h = history({ now: c.now })
  const frames = [h.append('a', 'order.shipped', '{"n":1}'), h.append('a', undefined, '{"n":2}')]
  const got: EventSourceMessage[] = []
  createParser({ onEvent: (e) => got.push(e) }).feed(frames.map((e) => e.frame.toString()).join(''))
  t.same(got, [
    { event: 'order.shipped', id: frames[0]?.id, data: '{"n":1}' },
    { event: undefined, id: frames[1]?.id, data: '{"n":2}' },
  ])
})

t.test('each recipient keeps its newest `size` entries', async (t) => {
  const c = clock()
  const h = history({ size: 3, now: c.now })
  const written = Array.from({ length: 7 }, (_, i) => h.append('a', undefined, JSON.stringify({ i })))
  const bytesAtSize = h.bytes
  h.append('b', undefined, '{}')
  const range = h.read('a', START).range
  t.same(range.map((e) => e.id), written.slice(-3).map((e) => e.id), 'the oldest went first')
  t.same(h.read('b', START).range.length, 1, 'another recipient is not trimmed by a')
  // Trimming gives the bytes back: one more entry of the same size costs nothing net.
  const before = h.bytes
  h.append('a', undefined, JSON.stringify({ i: 9 }))
  t.equal(h.bytes, before)
  t.ok(bytesAtSize > 0)
})

t.test('read: from undefined is the tip only; START is everything; an exact position is that entry on', async (t) => {
  const c = clock()
  const h = history({ size: 5, now: c.now })
  t.same(h.read('nobody', undefined), { range: [], tip: undefined }, 'unknown recipient, live')
  t.same(h.read('nobody', START), { range: [], tip: undefined }, 'unknown recipient, from START')

  const e = Array.from({ length: 4 }, () => {
    c.ms += 10
    return h.append('a', undefined, '{}')
  })
  const tip = e[3]?.position

  t.same(h.read('a', undefined), { range: [], tip }, 'live: no entries, the newest position')
  const all = h.read('a', START)
  t.same(all.tip, tip)
  t.same(all.range.map((x) => x.id), e.map((x) => x.id), 'START: every stored entry, oldest first')
  t.equal(all.range[0], e[0], 'the stored events themselves')

  const fromSecond = h.read('a', e[1]?.position)
  t.same(fromSecond.range.map((x) => x.id), e.slice(1).map((x) => x.id), 'exact: that entry and the newer ones')
  t.same(fromSecond.tip, tip)
  t.same(positions(h, 'a', tip), [tip], 'at the tip: the tip alone')

  // A position between two entries (never an id of ours): read from the next one on.
  const between = { ms: (e[1]?.position.ms ?? 0) + 5, seq: 0 }
  t.same(positions(h, 'a', between), e.slice(2).map((x) => x.position))
  // Past the tip: nothing, but the tip is still reported.
  t.same(h.read('a', { ms: (tip?.ms ?? 0) + 1, seq: 0 }), { range: [], tip })
})

t.test('read after trimming: a trimmed position is not found; the range starts later', async (t) => {
  const c = clock()
  const h = history({ size: 2, now: c.now })
  const e = [h.append('a', undefined, '{}'), h.append('a', undefined, '{}'), h.append('a', undefined, '{}')]
  const read = h.read('a', e[0]?.position)
  t.same(read.range.map((x) => x.id), [e[1]?.id, e[2]?.id], 'the first entry is not the one asked for')
  t.same(read.tip, e[2]?.position)
})

t.test('a history expires ttlMs after its last write; a write refreshes it', async (t) => {
  const c = clock(100_000)
  const h = history({ ttlMs: 1000, now: c.now })
  h.append('a', undefined, '{}')
  c.ms = 100_999
  t.equal(h.read('a', START).range.length, 1, 'still there just before the ttl')
  c.ms = 101_001
  t.same(h.read('a', START), { range: [], tip: undefined }, 'gone just after')
  t.equal(h.bytes, 0, 'every byte is given back')

  c.ms = 200_000
  h.append('a', undefined, '{}')
  c.ms = 200_800
  h.append('a', undefined, '{}') // refreshes: now lives until 201_800
  c.ms = 201_500
  t.equal(h.read('a', START).range.length, 2, 'past the first write + ttl, kept by the second write')
  t.equal(h.recipients, 1)
  c.ms = 201_799
  t.equal(h.read('a', START).range.length, 2)

  c.ms = 201_801
  t.same(h.read('a', START), { range: [], tip: undefined }, 'gone after the last write + ttl')
  t.same(h.read('a', undefined), { range: [], tip: undefined })
  t.equal(h.recipients, 0)
  t.equal(h.bytes, 0)
})

t.test('expiry is per recipient and happens on any write or read', async (t) => {
  const c = clock(0)
  const h = history({ ttlMs: 1000, now: c.now })
  c.ms = 100
  h.append('old', undefined, '{}')
  c.ms = 600
  h.append('new', undefined, '{}')
  c.ms = 1200 // old expired (1100), new lives until 1600
  h.append('other', undefined, '{}')
  t.equal(h.recipients, 2, 'the write of another recipient dropped the expired one')
  t.same(h.read('old', START).range, [])
  t.equal(h.read('new', START).range.length, 1)
  t.equal(h.bytes, cost('new', 1, '{}', 600) + cost('other', 1, '{}', 1200), 'old\'s bytes were given back')

  // A recipient that expired starts a new history: ids from the clock, seq 0.
  c.ms = 1300
  t.same(h.append('old', undefined, '{}').position, { ms: 1300, seq: 0 })
  c.ms = 1700 // new expired; other and old live on
  h.read('anyone', undefined)
  t.equal(h.recipients, 2, 'a read expires too')
  t.same(h.read('new', undefined), { range: [], tip: undefined })
  c.ms = 2400 // all expired
  h.read('anyone', undefined)
  t.equal(h.recipients, 0)
  t.equal(h.bytes, 0)
})

/** Bytes one recipient costs with `n` entries of `data`, measured on an unbounded history. */
function cost(recipient: string, n: number, data: string, at: number): number {
  const c = clock(at)
  const h = history({ now: c.now })
  for (let i = 0; i < n; i++) h.append(recipient, undefined, data)
  return h.bytes
}

t.test('over maxBytes, the least recently written recipients go first', async (t) => {
  const data = '{"x":"' + 'y'.repeat(100) + '"}'
  const one = cost('a', 1, data, 1000)
  const two = cost('a', 2, data, 1000)
  t.ok(two > one && one > 0)
  const c = clock(1000)
  // Room for a, b, c with one entry each, and not a byte more.
  const h = history({ maxBytes: 3 * one, now: c.now })
  h.append('a', undefined, data)
  h.append('b', undefined, data)
  h.append('c', undefined, data)
  t.equal(h.bytes, 3 * one)
  t.equal(h.recipients, 3, 'exactly at the bound: nothing evicted')

  // Reading a does not make it recently written.
  h.read('a', START)
  h.append('a', undefined, data) // a: the least recently written was a before this write; now it is b
  t.equal(h.recipients, 2)
  t.same(h.read('b', START), { range: [], tip: undefined }, 'b, written longest ago, went')
  t.equal(h.read('a', START).range.length, 2, 'the recipient just written kept everything')
  t.equal(h.read('c', START).range.length, 1)
  t.ok(h.bytes <= 3 * one)

  h.read('c', START)
  h.append('d', undefined, data)
  t.same(h.read('c', START).range, [], 'c went next, although it was read after a was written')
  t.equal(h.read('a', START).range.length, 2)
  t.equal(h.read('d', START).range.length, 1)
  t.ok(h.bytes <= 3 * one)
})

t.test('the recipient just written is never evicted for others; alone too big, it loses its oldest entries', async (t) => {
  const data = '{"x":"' + 'y'.repeat(100) + '"}'
  const one = cost('a', 1, data, 1000)
  const two = cost('a', 2, data, 1000)
  const c = clock(1000)
  const h = history({ maxBytes: two, now: c.now }) // one recipient with two entries
  h.append('a', undefined, data)
  const b1 = h.append('b', undefined, data) // a + b is over: a goes, b (just written) stays
  t.equal(h.recipients, 1)
  t.same(h.read('a', START).range, [], 'a went for b')
  t.same(h.read('b', START).range.map((x) => x.id), [b1.id], 'b kept its entry')
  t.equal(h.bytes, one)

  const b2 = h.append('b', undefined, data)
  t.same(positions(h, 'b'), [b1.position, b2.position], 'exactly at the bound')
  t.equal(h.bytes, two)

  // b alone is over the bound now: its own oldest entries go, the newest stay.
  const b3 = h.append('b', undefined, data)
  const b4 = h.append('b', undefined, data)
  t.same(positions(h, 'b'), [b3.position, b4.position], 'only the newest that fit')
  t.equal(h.bytes, two, 'back within the bound')

  // One event bigger than the whole bound: everything older goes, and it is kept
  // (it was just published under this id and delivered live).
  const huge = h.append('b', undefined, '{"x":"' + 'z'.repeat(4 * two) + '"}')
  t.same(positions(h, 'b'), [huge.position])
  t.equal(h.recipients, 1)

  // Then it goes like any other once someone else is written, and the bytes come back down.
  const c1 = h.append('c', undefined, data)
  t.same(h.read('b', START).range, [])
  t.same(positions(h, 'c'), [c1.position])
  t.equal(h.bytes, one)
})

t.test('clear drops everything', async (t) => {
  const c = clock()
  const h = history({ now: c.now })
  h.append('a', undefined, '{}')
  h.append('b', 'x', '{}')
  t.ok(h.bytes > 0)
  h.clear()
  t.equal(h.bytes, 0)
  t.equal(h.recipients, 0)
  t.same(h.read('a', START), { range: [], tip: undefined })
  t.same(h.read('b', undefined), { range: [], tip: undefined })
  // Still usable, and the bytes count starts from zero again.
  h.append('a', undefined, '{}')
  t.equal(h.bytes, cost('a', 1, '{}', c.ms))
})

t.test('a collapse key: the new event replaces the last stored one with that key, which it names', async (t) => {
  const c = clock()
  const h = history({ size: 4, now: c.now })
  const real = h.append('a', 'n', '{"n":1}')
  t.equal(h.read('a', START).trimmed, undefined, 'no collapse key yet: no bookkeeping to report')
  const p1 = h.append('a', 'progress', '{"p":1}', 'job-1')
  const p2 = h.append('a', 'progress', '{"p":2}', 'job-1')
  const p3 = h.append('a', 'progress', '{"p":3}', 'job-1')
  const other = h.append('a', 'progress', '{"p":1}', 'job-2')
  const read = h.read('a', START)
  t.same(read.range.map((e) => e.id), [real.id, p3.id, other.id], 'one entry per key, the latest, where it was published')
  t.equal(p1.replaced, undefined, 'the first of a key replaces nothing')
  t.equal(p3.replaced, [p2, p1].map((e) => `${e.position.ms}-${e.position.seq}`).join(' '), 'the latest names those it replaced, newest first')
  t.equal(other.replaced, undefined, 'another key is another event')
  t.same(read.trimmed, START, 'nothing trimmed so far')
  t.ok(p3.position.ms >= p2.position.ms && (p3.position.ms > p2.position.ms || p3.position.seq > p2.position.seq), 'ids still increase')

  // Trimming is counted once the recipient uses collapse keys.
  h.append('a', 'n', '{"n":2}')
  h.append('a', 'n', '{"n":3}')
  t.same(h.read('a', START).trimmed, real.position, 'the newest trimmed position')
  // The key's last event was trimmed: the next one replaces nothing, and names nothing.
  h.append('a', 'n', '{"n":4}')
  h.append('a', 'n', '{"n":5}')
  const p4 = h.append('a', 'progress', '{"p":4}', 'job-1')
  t.equal(p4.replaced, undefined)
  t.equal(h.read('a', START).range.length, 4)
})

t.test('a collapse key: the bytes of a replaced entry are given back', async (t) => {
  const c = clock()
  const h = history({ size: 3, now: c.now })
  h.append('a', 'progress', '{"p":0}', 'job')
  h.append('a', 'progress', '{"p":1}', 'job')
  const once = h.bytes
  h.append('a', 'progress', '{"p":2}', 'job')
  t.ok(h.bytes - once <= 2 * 16, `a replacement costs only the ids it names (${h.bytes - once} bytes more)`)
  t.equal(h.read('a', START).range.length, 1)
})
