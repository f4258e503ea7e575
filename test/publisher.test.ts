// The publisher for other services: createPublisher (Node, ioredis) and the
// script itself (any language, here redis-cli --eval), publishing to a running
// app over a real Redis. What they return is the id the browser gets.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { createPublisher, historyKey, PUBLISH_SCRIPT } from '../src/publisher.js'
import { type Built, build } from './helpers/app.js'
import { openStream, type TestStream } from './helpers/sse.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const ID = /^\d+-\d+\.[0-9a-f]{8}$/
const tag = (recipient: string) => createHash('sha1').update(recipient, 'utf8').digest('hex').slice(0, 8)

const listen = (t: Test, s: Built, user: string): Promise<TestStream> =>
  openStream(t, `${s.base}/notify`, { authorization: `Bearer user-${user}` })

/** Nothing was published for `user`: nothing stored, and a sentinel is the first event its stream gets. */
async function nothingPublished(t: Test, s: Built, user: string, stream: TestStream, channel = 'notifications'): Promise<void> {
  t.equal(await s.redis.client().xlen(`${channel}:history:{${user}}`), 0, 'nothing stored')
  const [sentinel] = await s.store({ recipient_id: user, type: 'sentinel' })
  const [first] = await stream.nextEvents(1)
  t.equal(first?.event, 'sentinel', 'the stream received nothing before the sentinel')
  t.equal(first?.id, sentinel?.id)
}

const exec = promisify(execFile)

/** Runs the real redis-cli against the test server from the repository root. */
async function redisCli(s: Built, args: string[]): Promise<string> {
  const { stdout } = await exec('redis-cli', ['-p', String(s.redis.port), ...args], { cwd: ROOT })
  return stdout.trim()
}

/** `redis-cli --eval redis/publish.lua <key> , <args>`, as documented for publishers without Node. */
const evalScript = (s: Built, key: string, args: string[]) => redisCli(s, ['--eval', 'redis/publish.lua', key, ',', ...args])

t.test('createPublisher: events arrive with the ids it returns', async (t) => {
  const s = await build(t)
  const notify = createPublisher({ redis: s.redis.client() })
  const a = await listen(t, s, 'pub-a')
  const b = await listen(t, s, '42')

  const [one] = await notify.publish({ recipient_id: 'pub-a', type: 'order.shipped', order: 'A-17' })
  t.match(one, { event: 0, recipient_id: 'pub-a', id: ID })
  t.equal(one?.id?.split('.')[1], tag('pub-a'))
  const batch = await notify.publish([
    { recipient_ids: ['pub-a', 42], type: 'invoice.ready', invoice: 'F-1' },
    { recipient_id: 42, note: 'plain' },
  ])
  t.same(
    batch.map((p) => [p.event, p.recipient_id]),
    [
      [0, 'pub-a'],
      [0, '42'],
      [1, '42'],
    ],
  )
  const ea = await a.nextEvents(2)
  const eb = await b.nextEvents(2)
  t.same(ea.map((e) => e.id), [one?.id, batch[0]?.id])
  t.same(eb.map((e) => e.id), [batch[1]?.id, batch[2]?.id])
  t.same(ea.map((e) => e.event), ['order.shipped', 'invoice.ready'])
  t.same(JSON.parse(ea[0]?.data ?? ''), { recipient_id: 'pub-a', type: 'order.shipped', order: 'A-17' })
  t.same(JSON.parse(eb[0]?.data ?? ''), { recipient_id: 42, type: 'invoice.ready', invoice: 'F-1' }, 'its own recipient_id')
  t.equal(eb[1]?.event, undefined, 'no type: a plain message')

  // What it stored is what a reconnecting browser is replayed.
  const again = await openStream(t, `${s.base}/notify`, { authorization: 'Bearer user-pub-a', 'last-event-id': one?.id ?? '' })
  const [replayed] = await again.nextEvents(1)
  t.equal(replayed?.id, batch[0]?.id)
})

t.test('createPublisher with the service settings: channel and history size', async (t) => {
  const s = await build(t, { env: { NOTIFY_CHANNEL: 'team-a', HISTORY_SIZE: '5' } })
  const notify = createPublisher({ redis: s.redis.client(), channel: 'team-a', historySize: 5, historyTtlS: 60 })
  const stream = await listen(t, s, 'ch')
  const ids: (string | null)[] = []
  for (let n = 0; n < 8; n++) ids.push(...(await notify.publish({ recipient_id: 'ch', n })).map((p) => p.id))
  const events = await stream.nextEvents(8)
  t.same(events.map((e) => e.id), ids)
  const admin = s.redis.client()
  t.equal(historyKey('team-a', 'ch'), 'team-a:history:{ch}')
  t.equal(await admin.xlen('team-a:history:{ch}'), 5, 'trimmed to historySize')
  const ttl = await admin.ttl('team-a:history:{ch}')
  t.ok(ttl > 0 && ttl <= 60, `expires after historyTtlS (${ttl})`)

  const none = createPublisher({ redis: admin, channel: 'team-a', historySize: 0 })
  const [p] = await none.publish({ recipient_id: 'ch', n: 'live' })
  t.equal(p?.id, null, 'historySize 0: no id')
  const [e] = await stream.nextEvents(9).then((all) => all.slice(8))
  t.equal(e?.id, undefined, 'delivered without id')
})

t.test('createPublisher: an invalid batch throws before anything is published', async (t) => {
  const s = await build(t)
  const admin = s.redis.client()
  const cases: [string, () => Promise<unknown>, { code: string; [k: string]: unknown }][] = [
    [
      'reserved type in the second event',
      () => createPublisher({ redis: admin }).publish([{ recipient_id: 'v0', type: 'ok' }, { recipient_id: 'v0', type: 'resync' }]),
      { code: 'NOTIFY_INVALID_EVENT', statusCode: 400, details: { event: 1, field: 'type' } },
    ],
    [
      'bad recipient',
      () => createPublisher({ redis: admin }).publish([{ recipient_id: 'v1' }, { recipient_id: 1.5 } as never]),
      { code: 'NOTIFY_INVALID_EVENT', details: { event: 1, field: 'recipient_id' } },
    ],
    [
      'more events than maxEvents',
      () => createPublisher({ redis: admin, maxEvents: 2 }).publish([1, 2, 3].map((k) => ({ recipient_id: 'v2', k }))),
      { code: 'NOTIFY_EVENT_TOO_LARGE', statusCode: 413, details: { field: 'events' } },
    ],
    [
      'an event over maxEventBytes',
      () => createPublisher({ redis: admin, maxEventBytes: 300 }).publish([{ recipient_id: 'v3' }, { recipient_id: 'v3', pad: 'x'.repeat(400) }]),
      { code: 'NOTIFY_EVENT_TOO_LARGE', details: { event: 1, field: 'event' } },
    ],
  ]
  let k = 0
  for (const [name, run, error] of cases) {
    await t.test(name, async (t) => {
      const user = `v${k++}`
      const stream = await listen(t, s, user)
      await t.rejects(run(), error)
      await nothingPublished(t, s, user, stream)
    })
  }
})

t.test('after SCRIPT FLUSH publishing still works, each event once (NOSCRIPT recovery)', async (t) => {
  const s = await build(t)
  const client = s.redis.client()
  const admin = s.redis.client()
  const notify = createPublisher({ redis: client })
  const sha = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex')
  const stream = await listen(t, s, 'flush')

  const first = await notify.publish({ recipient_id: 'flush', n: 0 })
  t.same(await admin.script('EXISTS', sha), [1], 'the script is cached')
  await admin.script('FLUSH')
  t.same(await admin.script('EXISTS', sha), [0], 'and flushed')
  const batch = await notify.publish([1, 2, 3].map((n) => ({ recipient_id: 'flush', n })))
  t.match(batch, [{ id: ID }, { id: ID }, { id: ID }], 'a whole batch after the flush')
  await admin.script('FLUSH')
  const viaApp = await s.store({ recipient_id: 'flush', n: 4 })
  t.match(viaApp, [{ id: ID }], "and the app's own publisher recovers too")

  const events = await stream.nextEvents(5)
  t.same(events.map((e) => e.id), [...first, ...batch, ...viaApp].map((p) => p.id))
  t.same(events.map((e) => JSON.parse(e.data).n), [0, 1, 2, 3, 4])
  t.equal(await admin.xlen('notifications:history:{flush}'), 5, 'each stored exactly once')
})

t.test('redis-cli --eval redis/publish.lua delivers an event with its id', async (t) => {
  const s = await build(t)
  const stream = await listen(t, s, '42')
  const data = '{"recipient_id":42,"type":"order.shipped"}'
  const id = await evalScript(s, 'notifications:history:{42}', ['notifications', '42', 'order.shipped', data, '100', '86400'])
  t.match(id, ID, `the script returns the event id (${id})`)
  t.equal(id.split('.')[1], tag('42'))
  const [e] = await stream.nextEvents(1)
  t.equal(e?.id, id, 'the SSE id is what the script returned')
  t.equal(e?.event, 'order.shipped')
  t.equal(e?.data, data)

  // No type, history off: delivered live without id; the script returns nil.
  const none = await evalScript(s, 'notifications:history:{42}', ['notifications', '42', '', '{"n":2}', '0', '86400'])
  t.equal(none, '', 'nil without history')
  const [, plain] = await stream.nextEvents(2)
  t.equal(plain?.event, undefined)
  t.equal(plain?.id, undefined)
  t.equal(plain?.data, '{"n":2}')

  // A recipient id of 256 two-byte characters is a valid user id.
  const wide = 'é'.repeat(256)
  const wideId = await evalScript(s, `notifications:history:{${wide}}`, ['notifications', wide, 'x', '{}', '100', '86400'])
  t.match(wideId, ID, 'a 256-character (512-byte) recipient is accepted')
})

t.test('the script refuses bad arguments, and stores and publishes nothing', async (t) => {
  const s = await build(t)
  const user = '77'
  const stream = await listen(t, s, user)
  const key = `notifications:history:{${user}}`
  const good = ['notifications', user, 'x', '{"a":1}', '100', '86400']
  const args = (i: number, value: string) => good.map((v, k) => (k === i ? value : v))
  const cases: [string, string, string[], RegExp][] = [
    ['the key of another recipient', 'notifications:history:{78}', good, /^NOTIFY_BAD_ARGUMENT key must be notifications:history:\{77\}$/],
    ['the key of another channel', 'other:history:{77}', good, /^NOTIFY_BAD_ARGUMENT key must be/],
    ['a key without braces', 'notifications:history:77', good, /^NOTIFY_BAD_ARGUMENT key must be/],
    ['a type with a space', key, args(2, 'bad type'), /^NOTIFY_BAD_ARGUMENT type must match/],
    ['a type of 65 characters', key, args(2, 'a'.repeat(65)), /^NOTIFY_BAD_ARGUMENT type must match/],
    ['the reserved type resync', key, args(2, 'resync'), /^NOTIFY_BAD_ARGUMENT type "resync" is reserved/],
    ['the reserved type auth-expired', key, args(2, 'auth-expired'), /^NOTIFY_BAD_ARGUMENT type "auth-expired" is reserved/],
    ['data an array', key, args(3, '[1,2]'), /^NOTIFY_BAD_ARGUMENT data must be a JSON object/],
    ['data a string', key, args(3, '"hello"'), /^NOTIFY_BAD_ARGUMENT data must be a JSON object/],
    ['data not JSON', key, args(3, 'not json'), /^NOTIFY_BAD_ARGUMENT data must be a JSON object/],
    ['data a broken object', key, args(3, '{"a":'), /^NOTIFY_BAD_ARGUMENT data must be a JSON object/],
    ['a negative history size', key, args(4, '-1'), /^NOTIFY_BAD_ARGUMENT history size/],
    ['a history size that is not a number', key, args(4, 'many'), /^NOTIFY_BAD_ARGUMENT history size/],
    ['a ttl of 0', key, args(5, '0'), /^NOTIFY_BAD_ARGUMENT history ttl/],
    ['a missing argument', key, good.slice(0, 5), /^NOTIFY_BAD_ARGUMENT expected 6, 9, 11 or 12 arguments/],
  ]
  for (const [name, k, a, error] of cases) {
    t.match(await evalScript(s, k, a), error, name)
  }
  const long = 'x'.repeat(257)
  t.match(
    await evalScript(s, `notifications:history:{${long}}`, ['notifications', long, 'x', '{}', '100', '86400']),
    /^NOTIFY_BAD_ARGUMENT recipient must be 1 to 256 characters/,
    'a recipient of 257 characters (what the service would drop as bad_recipient)',
  )
  t.equal(await s.redis.client().exists(`notifications:history:{${long}}`), 0, 'not stored')
  t.equal(await s.redis.client().exists('notifications:history:{78}'), 0)
  await nothingPublished(t, s, user, stream)
  t.equal(s.app.notifier.ingest.stats.received, 1, 'only the sentinel reached the channel')
})
