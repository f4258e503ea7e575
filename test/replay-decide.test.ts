// Where a resumed stream starts: the events it missed, or resync when they may be gone.
import t from 'tap'
import { formatEventId, type Position, START } from '../src/history/event-id.js'
import { decide, type HistoryRead, type StoredEvent } from '../src/history/replay.js'

const SIZE = 3

function entry(ms: number, seq = 0): StoredEvent {
  const position = { ms, seq }
  const id = formatEventId(position, 'deadbeef')
  return { id, position, frame: Buffer.from(`id: ${id}\ndata: {}\n\n`) }
}

/** A read whose tip is its last entry, unless given (`undefined` included: no history). */
function read(range: StoredEvent[], ...tip: [Position | undefined] | []): HistoryRead {
  return { range, tip: tip.length === 0 ? range.at(-1)?.position : tip[0] }
}

const RESYNC = (position: Position) => ({ resync: true, position, replay: [] })

t.test('no from (a fresh live stream): stand at the tip, replay nothing, announce it', async (t) => {
  t.strictSame(decide(undefined, read([], { ms: 50, seq: 2 }), SIZE), { resync: false, position: { ms: 50, seq: 2 }, replay: [], announce: true })
  t.strictSame(decide(undefined, read([], undefined), SIZE), { resync: false, position: START, replay: [], announce: true }, 'empty history: START')
  // Even if a broker returned entries, a live stream replays none of them.
  const out = decide(undefined, read([entry(10), entry(20)]), SIZE)
  t.strictSame(out, { resync: false, position: { ms: 20, seq: 0 }, replay: [], announce: true })
  // A stream resuming from an id has its own: nothing to announce.
  t.equal(decide(START, read([]), SIZE).announce, undefined)
})

t.test('from START with fewer entries than the history size: replay them all', async (t) => {
  const range = [entry(10), entry(10, 1)]
  const out = decide(START, read(range), SIZE)
  t.equal(out.resync, false)
  t.same(out.position, { ms: 10, seq: 1 }, 'position is the last replayed')
  t.equal(out.replay, range, 'the range itself, in order')

  t.same(decide(START, read([]), SIZE), { resync: false, position: START, replay: [] }, 'nothing stored: still at START')
  // A tip ahead of the range does not change where the stream stands: it got what it replayed.
  t.same(decide(START, read([entry(10)], { ms: 99, seq: 0 }), SIZE).position, { ms: 10, seq: 0 })
})

t.test('from START with a full (possibly trimmed) history: resync at the tip', async (t) => {
  const full = [entry(10), entry(20), entry(30)]
  t.same(decide(START, read(full), SIZE), RESYNC({ ms: 30, seq: 0 }), 'exactly historySize entries')
  t.same(decide(START, read([...full, entry(40)]), SIZE), RESYNC({ ms: 40, seq: 0 }), 'more than historySize')
  t.same(decide(START, read(full, undefined), SIZE), RESYNC(START), 'no tip: START')
})

t.test('from an exact position that is the first entry: replay the rest', async (t) => {
  const range = [entry(10), entry(20), entry(20, 1)]
  const out = decide({ ms: 10, seq: 0 }, read(range), SIZE)
  t.equal(out.resync, false)
  t.same(out.replay, range.slice(1))
  t.equal(out.replay[0], range[1], 'the stored events themselves, not copies')
  t.same(out.position, { ms: 20, seq: 1 }, 'position is the last replayed')

  // Up to date: the range is just `from`; nothing to replay, position stays at `from`.
  const from = { ms: 30, seq: 4 }
  t.same(decide(from, read([entry(30, 4)]), SIZE), { resync: false, position: from, replay: [] })

  // A full history of historySize entries whose oldest is `from`: the most that can be replayed.
  const full = [entry(1), entry(2), entry(3)]
  t.same(decide({ ms: 1, seq: 0 }, read(full), SIZE), { resync: false, position: { ms: 3, seq: 0 }, replay: full.slice(1) })
})

t.test('from an exact position that is gone: resync at the tip', async (t) => {
  const tip = { ms: 40, seq: 0 }
  // Not stored at all (trimmed or expired): the read returns nothing at or after it...
  t.same(decide({ ms: 5, seq: 0 }, read([], tip), SIZE), RESYNC(tip), 'empty range')
  t.same(decide({ ms: 5, seq: 0 }, read([], undefined), SIZE), RESYNC(START), 'empty range, no history: START')
  // ...or starts later than it: what came between is lost.
  t.same(decide({ ms: 5, seq: 0 }, read([entry(10), entry(40)]), SIZE), RESYNC(tip), 'first entry is later')
  t.same(decide({ ms: 10, seq: 0 }, read([entry(10, 1), entry(40)]), SIZE), RESYNC(tip), 'same ms, other seq')
  t.same(decide({ ms: 10, seq: 1 }, read([entry(10, 0), entry(40)]), SIZE), RESYNC(tip), 'same ms, earlier seq')
  // More than historySize entries from `from` on: a history trimmed to historySize
  // cannot hold them all, so `from` is about to go or the read is not to be trusted.
  const over = [entry(1), entry(2), entry(3), entry(4)]
  t.same(decide({ ms: 1, seq: 0 }, read(over), SIZE), RESYNC({ ms: 4, seq: 0 }), 'historySize + 1 entries')
  t.same(decide({ ms: 1, seq: 0 }, read(over, undefined), SIZE), RESYNC(START), 'and no tip: START')
})

t.test('from a position a collapse key replaced: the rest, when nothing after it was trimmed', async (t) => {
  /** An entry that replaced these entry ids (newest first), as the script and the memory history record them. */
  const replacing = (ms: number, ...replaced: string[]): StoredEvent => ({ ...entry(ms), replaced: replaced.join(' ') })
  const collapsed = (range: StoredEvent[], trimmed: Position | undefined): HistoryRead => ({ ...read(range), ...(trimmed && { trimmed }) })
  const latest = replacing(30, '20-0', '15-0', '12-0')
  const range = [entry(25), latest, entry(40)]
  const from = { ms: 15, seq: 0 }
  t.same(decide(from, collapsed(range, START), SIZE), { resync: false, position: { ms: 40, seq: 0 }, replay: range }, 'everything after it, the replacement included')
  t.same(decide(from, collapsed(range, { ms: 14, seq: 0 }), SIZE).resync, false, 'trimmed up to before it')
  t.same(decide(from, collapsed(range, from), SIZE).resync, false, 'trimmed up to it (nothing after it)')
  t.same(decide({ ms: 12, seq: 0 }, collapsed(range, START), SIZE).replay, range, 'the oldest id the list names')

  t.same(decide(from, collapsed(range, { ms: 15, seq: 1 }), SIZE), RESYNC({ ms: 40, seq: 0 }), 'something after it was trimmed')
  t.same(decide(from, collapsed(range, undefined), SIZE), RESYNC({ ms: 40, seq: 0 }), 'trimming unknown (no collapse bookkeeping)')
  t.same(decide({ ms: 2, seq: 0 }, collapsed(range, START), SIZE), RESYNC({ ms: 40, seq: 0 }), 'named by no entry: lost, not replaced')
  t.same(decide({ ms: 20, seq: 1 }, collapsed(range, START), SIZE).resync, true, 'an id is matched whole: 20-1 is not 20-0')
  t.same(decide({ ms: 2, seq: 0 }, collapsed([replacing(30, '12-0')], START), SIZE).resync, true, "'2-0' inside '12-0' is no match")
  const over = [entry(25), latest, entry(40), entry(50)]
  t.same(decide(from, collapsed(over, START), SIZE).resync, true, 'more than historySize entries after it: not to be trusted')
})
