// Slots: at most N auth calls at a time, first come first served, and a
// waiting caller gives up when its own timeout fires.
import t from 'tap'
import { Slots } from '../src/auth/slots.js'

const never = () => new AbortController().signal

t.test('at most `limit` at once; the others in arrival order', async (t) => {
  const slots = new Slots(2)
  await slots.acquire(never())
  await slots.acquire(never())
  const order: number[] = []
  const third = slots.acquire(never()).then(() => order.push(3))
  const fourth = slots.acquire(never()).then(() => order.push(4))
  await Promise.resolve()
  t.same(order, [], 'both wait while two are out')
  t.equal(slots.waiting, 2)
  slots.release()
  await third
  t.same(order, [3], 'the first in line goes first')
  slots.release()
  await fourth
  t.same(order, [3, 4])
  slots.release()
  slots.release()
  await slots.acquire(never())
  await slots.acquire(never())
  t.equal(slots.waiting, 0, 'released slots are reusable')
})

t.test('a waiting caller whose signal aborts leaves the line, with the reason', async (t) => {
  const slots = new Slots(1)
  await slots.acquire(never())
  const gone = new AbortController()
  const waiting = slots.acquire(gone.signal)
  const next = slots.acquire(never())
  gone.abort(new Error('timed out'))
  await t.rejects(waiting, /timed out/)
  t.equal(slots.waiting, 1, 'only the other one still waits')
  slots.release()
  await next
  await t.rejects(slots.acquire(AbortSignal.abort(new Error('late'))), /late/, 'an aborted signal does not even queue')
})

t.test('run: the slot is held for the call and given back even when it throws', async (t) => {
  const slots = new Slots(1)
  await t.rejects(slots.run(never(), async () => { throw new Error('upstream said no') }, () => new Error('never')), /upstream said no/)
  t.equal(await slots.run(never(), async () => 'ok', () => new Error('never')), 'ok', 'the slot came back')
  await slots.acquire(never())
  let ran = false
  const gone = new AbortController()
  const call = slots.run(gone.signal, async () => { ran = true }, (reason) => new Error(`unavailable: ${String(reason)}`))
  gone.abort('timeout')
  await t.rejects(call, /unavailable: timeout/)
  t.notOk(ran, 'a call that timed out while waiting never runs')
})
