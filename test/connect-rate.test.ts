// The per-client connect rate of /notify (sse/connect-rate.ts), on a clock the
// test moves: a fixed window from the first connect, and a bounded memory.
import t from 'tap'
import { ConnectRate } from '../src/sse/connect-rate.js'

function limiter(max: number, maxKeys = 100) {
  const clock = { now: 1_000_000 }
  return { clock, rate: new ConnectRate(max, 60_000, maxKeys, () => clock.now) }
}

t.test('max connects per window, then the time until the window resets', async (t) => {
  const { clock, rate } = limiter(3)
  t.same([rate.hit('a'), rate.hit('a'), rate.hit('a')], [0, 0, 0], 'the first three pass')
  clock.now += 15_000
  t.equal(rate.hit('a'), 45_000, 'the fourth waits out what is left of the window')
  t.equal(rate.hit('b'), 0, 'another address has its own window')
  clock.now += 44_999
  t.equal(rate.hit('a'), 1, 'still refused a millisecond before the reset')
  clock.now += 1
  t.equal(rate.hit('a'), 0, 'a new window once the old one ends')
  t.equal(rate.hit('a'), 0)
  t.equal(rate.hit('a'), 0)
  t.equal(rate.hit('a'), 60_000, 'and the same limit in it')
})

t.test('a refused connect counts too: hammering does not reopen the window early', async (t) => {
  const { clock, rate } = limiter(1)
  rate.hit('a')
  for (let i = 0; i < 100; i++) t.ok(rate.hit('a') > 0)
  clock.now += 60_000
  t.equal(rate.hit('a'), 0)
})

t.test('remembers at most maxKeys addresses, forgetting the least recently seen', async (t) => {
  const { rate } = limiter(1, 3)
  for (const ip of ['a', 'b', 'c']) rate.hit(ip)
  t.ok(rate.hit('a') > 0, 'a seen again: now the most recent')
  rate.hit('d')
  t.equal(rate.size, 3, 'bounded')
  t.equal(rate.hit('b'), 0, 'b, the least recently seen, was forgotten: a fresh window')
  t.ok(rate.hit('a') > 0, 'a was kept')
  t.equal(rate.size, 3)
})
