// A rolling upgrade from the version before per-user routing, with old and new
// side by side on one Redis: nothing live is lost in either direction, and
// nothing is delivered twice.
// - An old instance listens on the classic channel only. With
//   PUBLISH_CLASSIC_COPY=true a new instance's publishes also go there, marked
//   as copies (one space after the recipient's JSON), which the old parser
//   reads as any other event and new instances skip (they get the event on the
//   user's own channel).
// - An old publisher (the old script, or the new script called with its 6 old
//   arguments) publishes on the classic channel, unmarked: new instances deliver it.
// The old instance is played by a subscriber on the classic channel with the
// envelope parser, which this version did not change.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { PUBLISH_SCRIPT } from '../src/broker/publish-script.js'
import { isEnvelope, parseEnvelope } from '../src/history/envelope.js'
import { build } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'
import { openStream, type TestStream } from './helpers/sse.js'

const OLD_SCRIPT = readFileSync(new URL('./fixtures/publish-v1.lua', import.meta.url), 'utf8')

t.test('old and new instances side by side: every live event reaches both, once', async (t) => {
  const redis = await startRedis(t)
  const db = redis.client()
  const transition = await build(t, { redis, env: { PUBLISH_CLASSIC_COPY: 'true' } })
  const after = await build(t, { redis })

  // The old instance: what its ingest would hand to alice's streams, in order.
  const old: { recipient: string; id: string | undefined }[] = []
  const listener = redis.client()
  listener.on('message', (_channel: string, raw: string) => {
    if (!isEnvelope(raw)) return
    const parsed = parseEnvelope(raw)
    if (!parsed.ok) throw new Error(`the old parser refused ${JSON.stringify(raw)}`)
    old.push({ recipient: parsed.recipient, id: raw.slice(1, raw.indexOf('\n')) })
  })
  await listener.subscribe('notifications')

  const alice = await openStream(t, `${transition.base}/notify`, { authorization: 'Bearer user-alice' })
  const aliceLater = await openStream(t, `${after.base}/notify`, { authorization: 'Bearer user-alice' })

  const ids: string[] = []
  // 1. A new instance during the transition.
  ids.push(...(await transition.store({ recipient_id: 'alice', type: 'n', n: 1 })).map((p) => p.id as string))
  // 2. An old publisher: the old script.
  const oldArgs = (n: number) => ['notifications:history:{alice}', 'notifications', 'alice', 'n', JSON.stringify({ recipient_id: 'alice', type: 'n', n }), 100, 86400]
  ids.push((await db.eval(OLD_SCRIPT, 1, ...oldArgs(2))) as string)
  // 3. The new script with the old arguments (a caller that updated the file only).
  ids.push((await db.eval(PUBLISH_SCRIPT, 1, ...oldArgs(3))) as string)
  // 4. A new instance once the transition is over: only the user's own channel.
  const last = (await after.store({ recipient_id: 'alice', type: 'n', n: 4 }))[0]?.id as string

  const until = async (stream: TestStream, id: string) => {
    for (let n = 1; ; n++) if ((await stream.nextEvents(n)).at(-1)?.id === id) return stream.events.map((e) => e.id)
  }
  t.same(await until(alice, last), [...ids, last], 'a stream on the transition instance: each event once, in order')
  t.same(await until(aliceLater, last), [...ids, last], 'a stream on an upgraded instance: the same')
  t.same(
    old.map((o) => o.id),
    ids,
    'the old instance got the three published during the transition (and, rightly, not the one after it)',
  )
  t.ok(old.every((o) => o.recipient === 'alice'), 'with the right recipient')
  t.equal(transition.app.notifier.ingest.stats.copies, 1, "the transition instance skipped its own copy on the classic channel")
  t.equal(after.app.notifier.ingest.stats.copies, 1, 'and so did the upgraded one')
})
