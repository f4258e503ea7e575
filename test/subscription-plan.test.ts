// The reconciling pass's plan, pure: what to subscribe where, what to drop,
// what a slot move took away; and the command groups and slot map key.
import calculateSlot from 'cluster-key-slot'
import t from 'tap'
import { commandGroups, planPass, slotMapKey } from '../src/broker/subscription-plan.js'

const map = <V>(entries: [string, V][]) => new Map(entries)

t.test('a new user is subscribed where their slot lives; a departed one is dropped', async (t) => {
  const plan = planPass(map([['n:{gone}', 'a:1'], ['n:{kept}', 'a:1']]), map([['n:{kept}', 'a:1'], ['n:{new}', 'b:2']]), 'a:1')
  t.same(plan.subscribe, map([['b:2', ['n:{new}']]]))
  t.same(plan.unsubscribe, map([['a:1', ['n:{gone}']]]))
  t.same(plan.moved, [])
  t.same(plan.nodes, new Set(['a:1', 'b:2']))
})

t.test('a channel whose slot moved is lost and subscribed again on its new node', async (t) => {
  const plan = planPass(map([['n:{u}', 'a:1']]), map([['n:{u}', 'c:3']]), 'a:1')
  t.same(plan.moved, ['n:{u}'])
  t.same(plan.subscribe, map([['c:3', ['n:{u}']]]))
  t.same(plan.unsubscribe, new Map(), 'nothing to unsubscribe: the old node dropped it')
})

t.test('a slot with no known master waits; the classic node is kept in use', async (t) => {
  const plan = planPass(new Map(), map([['n:{u}', undefined]]), 'a:1')
  t.same(plan.subscribe, new Map())
  t.same(plan.nodes, new Set(['a:1']))
  t.same(planPass(new Map(), new Map(), undefined).nodes, new Set())
})

t.test('command groups: one per slot on a Cluster, chunks otherwise', async (t) => {
  const channels = ['n:{a}', 'n:{b}', 'n:{a}x', 'n:{c}']
  const bySlot = commandGroups(channels, calculateSlot, 1000)
  for (const group of bySlot) t.equal(new Set(group.map((c) => calculateSlot(c))).size, 1, 'one slot per command')
  t.equal(bySlot.flat().length, 4)
  t.same(commandGroups(channels, undefined, 3), [['n:{a}', 'n:{b}', 'n:{a}x'], ['n:{c}']])
})

t.test('the slot map key changes with a master, not with replicas', async (t) => {
  const slots = Array.from({ length: 16384 }, (_, i) => (i < 8192 ? ['a:1', 'r:1'] : ['b:2', 'r:2']))
  const key = slotMapKey(slots)
  t.equal(key, '0:a:1;8192:b:2;')
  t.equal(slotMapKey(slots.map((s) => [s[0] as string, 'other'])), key, 'replicas do not matter')
  const moved = slots.map((s, i) => (i === 42 ? ['b:2'] : s))
  t.not(slotMapKey(moved), key, 'one slot moving does')
})
