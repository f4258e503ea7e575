// The recipient index, without sockets.
import t from 'tap'
import { Router } from '../src/sse/router.js'

t.test('add, look up, remove', async (t) => {
  const r = new Router<string>()
  r.add('42', 'tab1')
  r.add('42', 'tab2')
  r.add('7', 'tab3')
  r.add('42', 'tab1') // idempotent
  t.equal(r.size, 3)
  t.equal(r.users, 2)
  t.same([...(r.streamsOf('42') ?? [])], ['tab1', 'tab2'])
  t.equal(r.streamsOf('nobody'), undefined)
  t.ok(r.remove('42', 'tab1'))
  t.notOk(r.remove('42', 'tab1'), 'second removal is a no-op')
  t.notOk(r.remove('7', 'tab2'), 'a stream of another user is not removed')
  t.equal(r.size, 2)
  t.same([...r.all()].sort(), ['tab2', 'tab3'])
})

t.test('empty recipient sets are dropped at once', async (t) => {
  const r = new Router<object>()
  const streams = Array.from({ length: 10_000 }, (_, i) => ({ user: String(i % 1000) }))
  for (const s of streams) r.add(s.user, s)
  t.equal(r.users, 1000)
  for (const s of streams) r.remove(s.user, s)
  t.equal(r.size, 0)
  t.equal(r.users, 0)
  t.same([...r.all()], [])
})

t.test('removing during iteration is safe (slow streams close while being written)', async (t) => {
  const r = new Router<number>()
  for (let i = 0; i < 100; i++) r.add(String(i % 3), i)
  let seen = 0
  for (const s of r.all()) {
    seen++
    r.remove(String(s % 3), s)
  }
  t.equal(seen, 100)
  t.equal(r.size, 0)
})
