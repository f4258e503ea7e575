// redis/publish.lua's two publish controls, called directly as a publisher in
// another language would (EVAL, and SCRIPT LOAD + EVALSHA, with the 11
// documented arguments): 'live' stores nothing; a collapse key replaces the
// recipient's last stored event with that key, names what it replaced ('r')
// and, from then on, records what was ever trimmed ('w'), so that readers can
// resume from a replaced id without a wrong `resync`.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { collapseIndexKey } from '../src/broker/keys.js'
import { historyKey, PUBLISH_SCRIPT, PUBLISH_SCRIPT_SHA } from '../src/broker/publish-script.js'
import { parseEnvelope } from '../src/history/envelope.js'
import { type Position, parseEventId } from '../src/history/event-id.js'
import { decide } from '../src/history/replay.js'
import { build } from './helpers/app.js'
import { subscribeChannel } from './helpers/channel.js'
import { startRedis, type TestRedis } from './helpers/redis.js'

const redis: TestRedis = await startRedis(t)
const db = redis.client()
const OLD_SCRIPT = readFileSync(new URL('./fixtures/publish-v1.lua', import.meta.url), 'utf8')

let channels = 0
const channel = () => `coll${++channels}`

interface Call {
  channel: string
  recipient?: string
  type?: string
  data?: string
  size?: number
  storage?: string
  collapse?: string
  idem?: string
  routing?: string
}

/** KEYS and ARGV exactly as documented at the top of the script (11 arguments). */
function args(c: Call): (string | number)[] {
  const recipient = c.recipient ?? 'u'
  const keys = [historyKey(c.channel, recipient)]
  if (c.idem) keys.push(`${c.channel}:idem:{${recipient}}:${c.idem}`)
  if (c.collapse) keys.push(`${c.channel}:collapse:{${recipient}}`)
  const argv = [c.channel, recipient, c.type ?? 'progress', c.data ?? '{}', c.size ?? 10, 100, c.routing ?? 'classic', c.idem ?? '', 600]
  return [keys.length, ...keys, ...argv, c.storage ?? 'store', c.collapse ?? '']
}

const evalCall = (c: Call) => db.eval(PUBLISH_SCRIPT, ...(args(c) as [number, ...(string | number)[]]))
const evalshaCall = (c: Call) => db.evalsha(PUBLISH_SCRIPT_SHA, ...(args(c) as [number, ...(string | number)[]]))

const entryOf = (id: unknown): string => {
  if (typeof id !== 'string' || !parseEventId(id).ok) throw new Error(`not an event id: ${String(id)}`)
  return id.slice(0, id.indexOf('.'))
}

/** Where an id the script returned stands in the history. */
const at = (id: unknown): Position => {
  const parsed = parseEventId(id as string)
  if (!parsed.ok) throw new Error(`not an event id: ${String(id)}`)
  return parsed.position
}

type Entry = [string, string[]]
const entries = async (ch: string, recipient = 'u') => (await db.xrange(historyKey(ch, recipient), '-', '+')) as Entry[]
const fields = (e: Entry | undefined) => Object.fromEntries((e?.[1] ?? []).flatMap((v, i, all) => (i % 2 === 0 ? [[v, all[i + 1]]] : [])))

/** What arrives on the classic channel, in order, and `drain()`. */
async function classic(name: string) {
  const log = await subscribeChannel(redis.client(), name)
  /** Publishes a marker and resolves with everything before it: nothing else is on its way. */
  const drain = async (): Promise<string[]> => {
    await db.publish(name, 'end')
    for (let n = 1; ; n++) if ((await log.next(n)).at(-1) === 'end') return log.messages.slice(0, n - 1)
  }
  return { ...log, drain }
}

/** The service's own reader (an app on this Redis): what a stream resuming from `from` is told. */
async function reader(t: Parameters<typeof build>[0], ch: string, size = 10) {
  const s = await build(t, { redis, env: { NOTIFY_CHANNEL: ch, HISTORY_SIZE: String(size) } })
  return async (from: Position, recipient = 'u') => decide(from, await s.app.notifier.broker.read({ recipient, from }), size)
}

t.test('a collapse key replaces the last stored event with that key, names what it replaced, keeps ids increasing', async (t) => {
  const ch = channel()
  const real = await evalCall({ channel: ch, type: 'n', data: '{"n":1}' })
  t.equal(await db.exists(collapseIndexKey(ch, 'u')), 0, 'no collapse key yet: no index')
  t.same(fields((await entries(ch))[0]), { t: 'n', d: '{"n":1}' }, 'and a plain entry, as before')
  const p = [] as unknown[]
  // EVAL and EVALSHA alike (the script is cached by the EVALs).
  p.push(await evalCall({ channel: ch, data: '{"p":10}', collapse: 'job:1' }))
  p.push(await evalshaCall({ channel: ch, data: '{"p":20}', collapse: 'job:1' }))
  p.push(await evalshaCall({ channel: ch, data: '{"p":30}', collapse: 'job:1' }))
  const stored = await entries(ch)
  t.same(stored.map(([id]) => id), [entryOf(real), entryOf(p[2])], 'the real event and the latest progress only')
  // 'w': the history had plain entries before; what was trimmed before them is
  // unknown, so the first tracked write assumes the worst (anything before the oldest stored).
  t.same(fields(stored[1]), { t: 'progress', d: '{"p":30}', r: `${entryOf(p[1])} ${entryOf(p[0])}`, k: 'job:1', w: entryOf(real) })
  t.equal(await db.hget(collapseIndexKey(ch, 'u'), 'job:1'), `${entryOf(p[2])} ${entryOf(p[1])} ${entryOf(p[0])}`, 'the index: latest id, then those it replaced')
  const ttl = await db.ttl(collapseIndexKey(ch, 'u'))
  t.ok(ttl > 90 && ttl <= 100, `the index lives as long as the history (${ttl} s)`)
  const positions = [real, ...p].map((id) => entryOf(id).split('-').map(Number) as [number, number])
  for (let i = 1; i < positions.length; i++) {
    const [a, b] = [positions[i - 1] as [number, number], positions[i] as [number, number]]
    t.ok(b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]), `id ${i} after id ${i - 1}`)
  }

  // Another key is another event; a plain event after them is plain but tracked.
  const other = await evalCall({ channel: ch, data: '{"p":5}', collapse: 'job:2' })
  await evalCall({ channel: ch, type: 'n', data: '{"n":2}' })
  const after = await entries(ch)
  t.same(after.map(([id]) => id).slice(0, 3), [entryOf(real), entryOf(p[2]), entryOf(other)])
  t.same(fields(after[3]), { t: 'n', d: '{"n":2}', w: entryOf(real) }, 'a recipient with an index: every entry says what was trimmed')
  const fresh = await evalCall({ channel: ch, recipient: 'v', collapse: 'job:1' })
  t.same(fields((await entries(ch, 'v'))[0]), { t: 'progress', d: '{}', k: 'job:1', w: '0-0' }, 'a history that starts tracked: nothing trimmed')
  t.ok(fresh)
})

t.test('the reader resumes after a replaced id, and sends resync once something after it was trimmed', async (t) => {
  const ch = channel()
  const read = await reader(t, ch, 4)
  const real = await evalCall({ channel: ch, type: 'n', size: 4 })
  const p1 = await evalCall({ channel: ch, size: 4, collapse: 'job' })
  const p2 = await evalCall({ channel: ch, size: 4, collapse: 'job' })
  const p3 = await evalCall({ channel: ch, size: 4, collapse: 'job' })
  const ids = (o: Awaited<ReturnType<typeof read>>) => (o.resync ? 'resync' : o.replay.map((e) => e.id))
  t.same(ids(await read(at(p1))), [p3], 'from a replaced id: the latest progress')
  t.same(ids(await read(at(p2))), [p3], 'from the one replaced last: the same')
  t.same(ids(await read(at(real))), [p3], 'from the real event before them: the latest progress only')
  const n2 = await evalCall({ channel: ch, type: 'n', size: 4 })
  const n3 = await evalCall({ channel: ch, type: 'n', size: 4 })
  t.same(ids(await read(at(p1))), [p3, n2, n3], 'history full, nothing trimmed yet')
  const n4 = await evalCall({ channel: ch, type: 'n', size: 4 })
  t.same(fields((await entries(ch)).at(-1)).w, entryOf(real), "'w': the newest trimmed id")
  t.same(ids(await read(at(p1))), [p3, n2, n3, n4], 'only what came before p1 was trimmed: still resumable')
  await evalCall({ channel: ch, type: 'n', size: 4 })
  t.same(fields((await entries(ch)).at(-1)).w, entryOf(p3))
  t.same(ids(await read(at(p1))), 'resync', 'p3, after p1, was trimmed: resync')
  t.same(ids(await read(at(n2))).length, 3, 'from a stored id: the rest, as ever')
})

t.test('an event between a replaced id and its (stored) replacement was trimmed: resync, not a silent gap', async (t) => {
  const ch = channel()
  const read = await reader(t, ch, 3)
  await evalCall({ channel: ch, type: 'n', size: 3 })
  const p1 = await evalCall({ channel: ch, size: 3, collapse: 'job' })
  const a = await evalCall({ channel: ch, type: 'n', size: 3 })
  const p2 = await evalCall({ channel: ch, size: 3, collapse: 'job' })
  const b = await evalCall({ channel: ch, type: 'n', size: 3 })
  const after = await read(at(p1))
  t.same(after.resync ? 'resync' : after.replay.map((e) => e.id), [a, p2, b], 'the first event trimmed was older: everything after p1')
  await evalCall({ channel: ch, type: 'n', size: 3 })
  t.same((await entries(ch)).map(([, f]) => fields([f[0] ?? '', f]).r ?? '-'), [entryOf(p1), '-', '-'], 'p2, which names p1, is still stored')
  t.equal((await read(at(p1))).resync, true, `a (after p1) was trimmed: resync`)
})

t.test("'live': delivered with no id, nothing stored, nil returned, even beside an index", async (t) => {
  const ch = channel()
  const sub = await classic(ch)
  await evalCall({ channel: ch, collapse: 'job' })
  const before = await entries(ch)
  t.equal(await evalCall({ channel: ch, type: 'tick', data: '{"p":1}', storage: 'live' }), null)
  t.equal(await evalshaCall({ channel: ch, type: 'tick', data: '{"p":2}', storage: 'live' }), null)
  t.same(await entries(ch), before, 'the history is as it was')
  const live = (await sub.next(3)).slice(1).map((m) => parseEnvelope(m))
  t.same(
    live.map((e) => (e.ok ? [e.position, e.frame.toString()] : e.reason)),
    [
      [undefined, 'event: tick\ndata: {"p":1}\n\n'],
      [undefined, 'event: tick\ndata: {"p":2}\n\n'],
    ],
    'published as envelopes without id: the browser gets no id',
  )
  t.equal(await evalCall({ channel: `${ch}x`, storage: 'live', routing: 'shard' }), null)
  t.equal(await db.exists(historyKey(`${ch}x`, 'u')), 0, 'a first live event creates no history either')
})

t.test('idempotency: a live retry publishes nothing; the controls are part of what a retry must repeat', async (t) => {
  const ch = channel()
  const sub = await classic(ch)
  t.equal(await evalCall({ channel: ch, storage: 'live', idem: 'k1' }), null)
  t.equal(await evalCall({ channel: ch, storage: 'live', idem: 'k1' }), null, 'the retry: nil again')
  await t.rejects(evalCall({ channel: ch, idem: 'k1' }), /^NOTIFY_IDEMPOTENCY_CONFLICT /, 'the same event stored: not the same publish')
  const stored = await evalCall({ channel: ch, collapse: 'job', idem: 'k2' })
  t.equal(await evalCall({ channel: ch, collapse: 'job', idem: 'k2' }), stored, 'a collapsing retry: the first id')
  await t.rejects(evalCall({ channel: ch, collapse: 'job-2', idem: 'k2' }), /^NOTIFY_IDEMPOTENCY_CONFLICT /, 'another collapse key')
  t.equal((await entries(ch)).length, 1, 'stored once')
  // Without controls the fingerprint is the one older callers wrote: a 9-argument
  // call and its 11-argument retry are one publish.
  const key = historyKey(ch, 'v')
  const idemKey = `${ch}:idem:{v}:k3`
  const first = await db.eval(PUBLISH_SCRIPT, 2, key, idemKey, ch, 'v', 'progress', '{}', 10, 100, 'classic', 'k3', 600)
  t.equal(await evalCall({ channel: ch, recipient: 'v', idem: 'k3' }), first)
  t.equal((await sub.drain()).length, 3, 'one live, one stored for u, one for v: no retry published')
})

t.test('bad controls: a NOTIFY_BAD_ARGUMENT error, nothing stored or published', async (t) => {
  const ch = channel()
  const sub = await classic(ch)
  const cases: [string, Call | (string | number)[]][] = [
    ['live with a collapse key', { channel: ch, storage: 'live', collapse: 'job' }],
    ['storage neither store nor live', { channel: ch, storage: 'keep' }],
    ['collapse key of 129 characters', { channel: ch, collapse: 'k'.repeat(129) }],
    ['collapse key with a space', { channel: ch, collapse: 'job 1' }],
    ['collapse key with a brace', { channel: ch, collapse: 'job{1}' }],
    ['collapse key with a non-ASCII letter', { channel: ch, collapse: 'jöb' }],
    ['a reserved type, live', { channel: ch, type: 'resync', storage: 'live' }],
    ['a reserved type, collapsing', { channel: ch, type: 'position', collapse: 'job' }],
    ['the index of another recipient', [2, historyKey(ch, 'u'), collapseIndexKey(ch, 'w'), ch, 'u', 'p', '{}', 10, 100, 'classic', '', 600, 'store', 'job']],
    ['the index in the slot of nobody', [2, historyKey(ch, 'u'), `${ch}:collapse:u`, ch, 'u', 'p', '{}', 10, 100, 'classic', '', 600, 'store', 'job']],
    ['11 arguments without the index', [1, historyKey(ch, 'u'), ch, 'u', 'p', '{}', 10, 100, 'classic', '', 600, 'store', 'job']],
    ['the index without a collapse key', [2, historyKey(ch, 'u'), collapseIndexKey(ch, 'u'), ch, 'u', 'p', '{}', 10, 100, 'classic', '', 600, 'store', '']],
    ['10 arguments', [2, historyKey(ch, 'u'), collapseIndexKey(ch, 'u'), ch, 'u', 'p', '{}', 10, 100, 'classic', '', 600, 'store']],
  ]
  for (const [name, c] of cases) {
    const call = Array.isArray(c) ? db.eval(PUBLISH_SCRIPT, ...(c as [number, ...(string | number)[]])) : evalCall(c)
    await t.rejects(call, /^NOTIFY_BAD_ARGUMENT /, name)
  }
  t.same(await db.keys(`${ch}:*`), [], 'no key written')
  t.ok(await evalCall({ channel: ch, collapse: 'A_b-9.x:y'.padEnd(128, 'z') }), 'a collapse key of 128 characters, every kind allowed')
  t.equal((await sub.drain()).length, 1, 'only the valid call published')
})

t.test('bounds: at most 100 replaced ids per entry; the index at most twice the history size', async (t) => {
  const ch = channel()
  for (let i = 0; i < 105; i++) await evalshaCall({ channel: ch, data: JSON.stringify({ p: i }), collapse: 'job' })
  const [only] = await entries(ch)
  t.equal(fields(only).r?.split(' ').length, 100, 'the newest 100 replaced ids')
  for (let i = 0; i < 30; i++) await evalshaCall({ channel: ch, data: '{}', size: 3, collapse: `job-${i}` })
  t.ok((await db.hlen(collapseIndexKey(ch, 'u'))) <= 6, 'keys whose event was trimmed are dropped from the index')
  t.equal(await db.hget(collapseIndexKey(ch, 'u'), 'job-29') !== null, true, 'the live ones stay')
})

t.test('writes without the index (6 or 9 arguments, the old script) leave readers on the safe side', async (t) => {
  const ch = channel()
  const read = await reader(t, ch)
  const p1 = await evalCall({ channel: ch, collapse: 'job' })
  await evalCall({ channel: ch, collapse: 'job' })
  t.equal((await read(at(p1))).resync, false, 'replaced, resumable')
  // An old publisher writes (and may trim) without knowing the bookkeeping.
  await db.eval(OLD_SCRIPT, 1, historyKey(ch, 'u'), ch, 'u', 'n', '{}', 10, 100)
  t.same(Object.keys(fields((await entries(ch)).at(-1))), ['t', 'd'])
  t.equal((await read(at(p1))).resync, true, 'what was trimmed is unknown now: resync, never a silent gap')
  // The next tracked write assumes the worst: everything before the oldest stored entry may be gone.
  const oldest = (await entries(ch))[0]?.[0]
  await evalCall({ channel: ch, collapse: 'job' })
  t.equal(fields((await entries(ch)).at(-1)).w, oldest)
})
