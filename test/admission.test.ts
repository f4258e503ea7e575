// Connection limits, as a pure function of the counts the hub reports.
import t from 'tap'
import { Admission } from '../src/sse/admission.js'

function counts() {
  const byUser = new Map<string, number>()
  return {
    byUser,
    get size() {
      let n = 0
      for (const v of byUser.values()) n += v
      return n
    },
    countOf: (u: string) => byUser.get(u) ?? 0,
  }
}

t.test('the total counts open streams and authentications in flight', async (t) => {
  const c = counts()
  const a = new Admission({ maxConnections: 3, maxConnectionsPerUser: 10 }, c)
  c.byUser.set('x', 1)
  t.ok(a.enter(), 'second place')
  t.ok(a.enter(), 'third place')
  t.notOk(a.enter(), 'full: 1 open + 2 authenticating')
  t.equal(a.authenticating, 2)
  a.leave()
  t.ok(a.enter(), 'a finished authentication frees its place')
  a.leave()
  a.leave()
  c.byUser.set('x', 3)
  t.notOk(a.enter(), 'full with open streams alone')
  c.byUser.set('x', 2)
  t.ok(a.enter())
  t.equal(a.authenticating, 1)
})

t.test('the per-user bound looks at that user only', async (t) => {
  const c = counts()
  const a = new Admission({ maxConnections: 100, maxConnectionsPerUser: 2 }, c)
  t.notOk(a.userFull('a'))
  c.byUser.set('a', 1)
  t.notOk(a.userFull('a'))
  c.byUser.set('a', 2)
  t.ok(a.userFull('a'), 'at the bound')
  t.notOk(a.userFull('b'), 'another user is not affected')
})
