// redis/publish.lua's 'delivery' reply (ARGV[12]), called with EVAL as another
// language would: { id or nil, instances or nil, route }; SPUBLISH's count of
// the instances holding the recipient's channel when it says something, nil
// when it does not (the classic channel, an idempotent retry). Callers of 6,
// 9 and 11 arguments keep getting the id string or nil.
import type { Redis } from 'ioredis'
import t from 'tap'
import { idempotencyKey, liveChannel } from '../src/broker/keys.js'
import { deliveryOf, historyKey, PUBLISH_SCRIPT } from '../src/broker/publish-script.js'
import { startRedis, type TestRedis } from './helpers/redis.js'

const redis: TestRedis = await startRedis(t)
const db = redis.client()
let channels = 0
const channel = () => `deliv${++channels}`
const ID = /^\d+-\d+\.[0-9a-f]{8}$/

/** The script with all twelve arguments (or the first `argc`), as documented at its top. */
function call(ch: string, recipient: string, o: { routing?: string; idem?: string; storage?: string; reply?: string; argc?: number; size?: number } = {}) {
  const keys = [historyKey(ch, recipient)]
  if (o.idem) keys.push(idempotencyKey(ch, recipient, o.idem))
  const args = [ch, recipient, 'n', '{"n":1}', o.size ?? 10, 60, o.routing ?? 'shard', o.idem ?? '', 60, o.storage ?? 'store', '', o.reply ?? 'delivery']
  return db.eval(PUBLISH_SCRIPT, keys.length, ...keys, ...args.slice(0, o.argc ?? 12))
}

/** `n` connections holding the recipient's own channel, as `n` instances do. */
async function instancesHolding(ch: string, recipient: string, n: number): Promise<Redis[]> {
  const subs = Array.from({ length: n }, () => redis.client())
  for (const sub of subs) await sub.ssubscribe(liveChannel(ch, recipient))
  return subs
}

t.test("'shard': the instances holding the recipient's channel; 0 is nobody", async (t) => {
  const ch = channel()
  t.match(await call(ch, 'u'), [ID, 0, 'shard'], 'nobody subscribed: 0')
  const subs = await instancesHolding(ch, 'u', 2)
  t.match(await call(ch, 'u'), [ID, 2, 'shard'], 'two subscriber connections: 2')
  t.same(await call(ch, 'u', { storage: 'live' }), [null, 2, 'shard'], 'a live event: no id, still counted')
  await subs[0]?.sunsubscribe()
  t.match(await call(ch, 'u'), [ID, 1, 'shard'])
  t.same(deliveryOf(await call(ch, 'u', { size: 0 })), { id: null, live: true, instances: 1 })
  t.same(deliveryOf(await call(ch, 'nobody', { size: 0 })), { id: null, live: false, instances: 0 })
})

t.test("'both': instances of this version counted; 0 says nothing (an old one reads the copy)", async (t) => {
  const ch = channel()
  t.match(await call(ch, 'u', { routing: 'both' }), [ID, 0, 'both'])
  t.match(deliveryOf(await call(ch, 'u', { routing: 'both' })), { live: null, instances: 0 })
  await instancesHolding(ch, 'u', 1)
  t.match(deliveryOf(await call(ch, 'u', { routing: 'both' })), { live: true, instances: 1 })
})

t.test("'classic': every instance gets it, whoever it is for: unknown", async (t) => {
  const ch = channel()
  await instancesHolding(ch, 'u', 1)
  t.match(await call(ch, 'u', { routing: 'classic' }), [ID, null, 'classic'])
  t.match(deliveryOf(await call(ch, 'u', { routing: 'classic' })), { id: ID, live: null, instances: null })
})

t.test('an idempotent retry publishes nothing: the first id, route none', async (t) => {
  const ch = channel()
  await instancesHolding(ch, 'u', 1)
  const [id] = (await call(ch, 'u', { idem: 'k:0' })) as [string]
  t.same(await call(ch, 'u', { idem: 'k:0' }), [id, null, 'none'])
  t.same(await call(ch, 'u', { idem: 'k:0', reply: 'id' }), id, "reply 'id': the id alone, as before")
})

t.test('older shapes keep their reply: the id string or nil', async (t) => {
  const ch = channel()
  await instancesHolding(ch, 'u', 1)
  t.match(await call(ch, 'u', { argc: 6 }), ID, '6 arguments')
  t.match(await call(ch, 'u', { argc: 9 }), ID, '9 arguments')
  t.match(await call(ch, 'u', { argc: 11 }), ID, '11 arguments')
  t.match(await call(ch, 'u', { reply: 'id' }), ID, "12 arguments, reply 'id'")
  t.equal(await call(ch, 'u', { argc: 11, storage: 'live' }), null, 'a live event: nil')
  await t.rejects(call(ch, 'u', { reply: 'count' }), /^NOTIFY_BAD_ARGUMENT reply must be 'id' or 'delivery'/)
  await t.rejects(call(ch, 'u', { argc: 10 }), /^NOTIFY_BAD_ARGUMENT expected 6, 9, 11 or 12 arguments/)
})
