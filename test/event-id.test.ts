// Event ids: `<ms>-<seq>.<tag>`, their parsing and their order.
import { createHash } from 'node:crypto'
import t from 'tap'
import {
  formatEntryId,
  formatEventId,
  isAfter,
  parseEntryId,
  parseEventId,
  recipientTag,
  samePosition,
  START,
} from '../src/history/event-id.js'

t.test('recipientTag is the first 8 hex digits of SHA-1 of the UTF-8 recipient', async (t) => {
  for (const r of ['42', 'alice', 'élodie ✓', 'line\nbreak', '😀']) {
    const expected = createHash('sha1').update(Buffer.from(r, 'utf8')).digest('hex').slice(0, 8)
    t.equal(recipientTag(r), expected, JSON.stringify(r))
    t.match(recipientTag(r), /^[0-9a-f]{8}$/)
  }
  // A known vector, so a change of hash or of slice length is caught even if both sides change.
  t.equal(recipientTag('abc'), 'a9993e36', 'SHA-1("abc") = a9993e36...')
  t.not(recipientTag('42'), recipientTag('43'))
})

t.test('formatEventId and parseEventId round-trip', async (t) => {
  const cases = [
    { ms: 0, seq: 0 },
    { ms: 1732200000000, seq: 3 },
    { ms: 999_999_999_999_999, seq: 999_999_999_999_999 }, // 15 digits each: the longest accepted
  ]
  for (const position of cases) {
    const id = formatEventId(position, 'deadbeef')
    t.equal(id, `${position.ms}-${position.seq}.deadbeef`)
    t.same(parseEventId(id), { ok: true, position, tag: 'deadbeef' }, id)
  }
  const tag = recipientTag('42')
  t.same(parseEventId(formatEventId({ ms: 17, seq: 1 }, tag)), { ok: true, position: { ms: 17, seq: 1 }, tag })
})

t.test('parseEventId refuses anything but the exact shape', async (t) => {
  const bad = [
    '',
    '1-0',
    '1-0.',
    '1-0.deadbee', // 7 hex digits
    '1-0.deadbeef0', // 9
    '1-0.DEADBEEF', // upper case: the tag is lower-case hex
    '1-0.deadbeeg',
    '1.deadbeef',
    '-0.deadbeef',
    '1-.deadbeef',
    '1--1.deadbeef',
    '-1-0.deadbeef',
    '1.5-0.deadbeef',
    '1-0.dead beef',
    ' 1-0.deadbeef', // leading junk
    'x1-0.deadbeef',
    'id: 1-0.deadbeef',
    '1-0.deadbeef ', // trailing junk
    '1-0.deadbeef\n',
    '1-0.deadbeef\n2-0.deadbeef',
    '0x1-0.deadbeef',
    '1e3-0.deadbeef',
    '１-0.deadbeef', // fullwidth digit
    `${'1'.repeat(16)}-0.deadbeef`, // 16 digits: past what a double holds exactly
    `1-${'1'.repeat(16)}.deadbeef`,
  ]
  for (const id of bad) t.same(parseEventId(id), { ok: false }, JSON.stringify(id))
})

t.test('ids longer than 64 characters are refused, whatever they hold', async (t) => {
  const valid = '1-0.deadbeef'
  t.ok(parseEventId(valid).ok)
  // Something that would match a careless unanchored pattern at its end.
  const long = `${'9'.repeat(65 - valid.length)}${valid}`
  t.equal(long.length, 65)
  t.same(parseEventId(long), { ok: false })
  t.same(parseEventId('a'.repeat(10_000)), { ok: false })
  t.same(parseEventId(`${'1-'.repeat(5000)}0.deadbeef`), { ok: false })
})

t.test('parseEntryId reads Redis Stream entry ids only', async (t) => {
  t.same(parseEntryId('1732200000000-3'), { ms: 1732200000000, seq: 3 })
  t.same(parseEntryId('0-0'), START)
  t.same(parseEntryId(formatEntryId({ ms: 5, seq: 7 })), { ms: 5, seq: 7 })
  for (const bad of ['', '1', '1-', '-1', '1-0.deadbeef', ' 1-0', '1-0 ', 'a-0', '1-0-0', `${'1'.repeat(16)}-0`, '1-2\n']) {
    t.equal(parseEntryId(bad), undefined, JSON.stringify(bad))
  }
})

t.test('isAfter orders by ms, then by seq, strictly', async (t) => {
  t.ok(isAfter({ ms: 2, seq: 0 }, { ms: 1, seq: 99 }), 'later ms wins over a larger seq')
  t.ok(isAfter({ ms: 1, seq: 1 }, { ms: 1, seq: 0 }), 'same ms: larger seq')
  t.notOk(isAfter({ ms: 1, seq: 0 }, { ms: 1, seq: 1 }))
  t.notOk(isAfter({ ms: 1, seq: 99 }, { ms: 2, seq: 0 }))
  t.notOk(isAfter({ ms: 1, seq: 1 }, { ms: 1, seq: 1 }), 'a position is not after itself')
  t.ok(isAfter({ ms: 0, seq: 1 }, START))
  t.notOk(isAfter(START, START))
})

t.test('samePosition compares both parts', async (t) => {
  t.ok(samePosition({ ms: 1, seq: 2 }, { ms: 1, seq: 2 }))
  t.notOk(samePosition({ ms: 1, seq: 2 }, { ms: 1, seq: 3 }))
  t.notOk(samePosition({ ms: 1, seq: 2 }, { ms: 2, seq: 2 }))
  t.ok(samePosition(START, { ms: 0, seq: 0 }))
  t.ok(Object.isFrozen(START))
})
