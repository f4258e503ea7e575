// One timer for many deadlines: order, removal, and nothing left behind.
import t from 'tap'
import { Deadlines, type Scheduled } from '../src/sse/deadlines.js'

interface Item extends Scheduled {
  name: string
}
const item = (name: string, deadline: number): Item => ({ name, deadline, heapIndex: -1 })

// Deadlines unref()s its timer so it never holds a process open; while a test
// awaits it, something must.
t.beforeEach((t) => {
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(keepAlive))
})

t.test('items fire in deadline order, however they were added', async (t) => {
  const fired: string[] = []
  const base = Date.now()
  let resolveDone: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const d = new Deadlines<Item>((i) => {
    fired.push(i.name)
    if (fired.length === 5) resolveDone()
  })
  const order = [40, 10, 50, 20, 30]
  for (const ms of order) d.add(item(`t${ms}`, base + ms))
  t.equal(d.size, 5)
  await done
  t.same(fired, ['t10', 't20', 't30', 't40', 't50'])
  t.equal(d.size, 0)
})

t.test('removed items never fire; heap order survives random removals', async (t) => {
  // A fake clock makes every deadline due at once when the timer fires, so the
  // firing order checks the heap, not the timer.
  let now = 0
  const fired: number[] = []
  let resolveDone: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const d = new Deadlines<Item>(
    (i) => {
      fired.push(i.deadline)
      if (d.size === 0) resolveDone()
    },
    () => now,
  )
  const items = Array.from({ length: 500 }, (_, i) => item(String(i), 1 + ((i * 7919) % 1000)))
  for (const i of items) d.add(i)
  const removed = new Set<Item>()
  for (let k = 0; k < items.length; k += 3) {
    d.remove(items[k] as Item)
    removed.add(items[k] as Item)
  }
  d.remove(items[0] as Item) // removing twice is harmless
  t.equal(d.size, items.length - removed.size)
  for (const r of removed) t.equal(r.heapIndex, -1)
  now = 10_000 // everything is due; the armed timer fires within ~1 s of real time
  // Re-arm with the new clock: adding and removing a dummy resets the timer.
  const dummy = item('dummy', 0)
  d.add(dummy)
  d.remove(dummy)
  d.add(item('last', 5000))
  await done
  const expected = items.filter((i) => !removed.has(i)).map((i) => i.deadline).concat(5000).sort((a, b) => a - b)
  t.same(fired, expected)
})

t.test('clear drops everything and the timer', async (t) => {
  const d = new Deadlines<Item>(() => t.fail('must not fire'))
  const i = item('x', Date.now() + 20)
  d.add(i)
  d.clear()
  t.equal(d.size, 0)
  t.equal(i.heapIndex, -1)
  // Proof by waiting past the deadline: there is no event to await for "did not fire".
  await new Promise((r) => setTimeout(r, 60))
})

t.test('re-adding an item moves it', async (t) => {
  let now = 0
  const fired: string[] = []
  let resolveDone: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const d = new Deadlines<Item>(
    (i) => {
      fired.push(i.name)
      if (fired.length === 2) resolveDone()
    },
    () => now,
  )
  const a = item('a', 10)
  const b = item('b', 20)
  d.add(a)
  d.add(b)
  a.deadline = 30
  d.add(a)
  t.equal(d.size, 2)
  now = 100
  d.add(item('c', 1000)) // re-arms the timer with the new clock; c stays pending
  await done
  t.same(fired, ['b', 'a'])
})
