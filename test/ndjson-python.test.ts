// A real non-Node NDJSON reader (issue 14, item 4): the README's Python reader
// (requests, iter_lines), run as written, reads a stream, is ended by the
// service (auth-expired), reconnects by itself with the last id it saw, and
// gets what was published meanwhile, once and in order, then live events.
//
// No sleeps: the reader prints each message and, after the second event,
// waits on stdin; meanwhile the test ends its stream and publishes what it
// will miss. The token is valid for 10 minutes (jose checks the real clock);
// only the hub's clock (AppDeps.now) passes its exp, and comes back before the
// reconnect, as a refreshed token would (see test/keep-alive.test.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import t from 'tap'
import { build } from './helpers/app.js'
import { hubSize } from './helpers/hub.js'
import { requestsTest, runPython } from './helpers/python.js'

const SECRET = 'ndjson-python-test-secret-long-enough-for-hs256'

/** The README's reader: the python block that defines `notifications`. */
function readmeReader(): string {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const block = [...readme.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1] as string).find((b) => b.includes('def notifications('))
  if (block === undefined) throw new Error('README has no python block defining notifications()')
  return block
}

// Runs the README's reader (argv[1]) and prints every message it yields.
const DRIVER = String.raw`
import json, sys
exec(open(sys.argv[1]).read())
base, token = sys.argv[2], sys.argv[3]
for message in notifications(base, lambda: token):
    print(json.dumps(message), flush=True)
    n = message.get("data", {}).get("n")
    if n == 2:
        sys.stdin.readline()  # the test ends the stream and publishes 3 and 4 meanwhile
    if n == 5:
        break
`

await requestsTest(t, "the README's Python reader: ended by the service, reconnects from its last id, misses nothing", { timeout: 60_000 }, async (t) => {
  const exp = Math.floor(Date.now() / 1000) + 600
  let now = exp * 1000 - 250
  const s = await build(t, { env: { AUTH_MODE: 'jwt', JWT_SECRET: SECRET, SSE_RETRY_MS: '200' }, deps: { now: () => now } })
  const hub = s.app.notifier.hub
  const token = await new SignJWT({ sub: 'alice', exp }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))
  const dir = mkdtempSync(join(tmpdir(), 'ndjson-python-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'reader.py'), readmeReader())
  const py = runPython(t, DRIVER, [join(dir, 'reader.py'), s.base, token])
  const store = async (n: number) => (await s.store({ recipient_id: 'alice', type: 'note', n }))[0]?.id

  // A first visit starts at the newest stored event once its place is read: a
  // live event sent once the stream is registered says, when it comes out, that
  // the stream is live and what is stored from then on reaches it.
  await hubSize(hub, 1)
  await s.publish({ recipient_id: 'alice', type: 'hello' })
  t.same(await py.line(1), { type: 'hello', data: { recipient_id: 'alice', type: 'hello' } }, 'a live event: no id')
  const ids = [await store(1), await store(2)]
  t.match(await py.line(2), { type: 'note', id: ids[0], data: { n: 1 } })
  t.match(await py.line(3), { type: 'note', id: ids[1], data: { n: 2 } })

  // The reader waits on stdin: its stream is ended, and 3 and 4 are stored while it is away.
  now = exp * 1000 + 1
  await hubSize(hub, 0)
  ids.push(await store(3), await store(4))
  now = exp * 1000 - 250
  py.write('\n')
  t.same(await py.line(4), { type: 'auth-expired', data: {} }, 'the stream was ended by auth-expired')
  t.match(await py.line(5), { type: 'note', id: ids[2], data: { n: 3 } }, 'replayed after the reconnect')
  t.match(await py.line(6), { type: 'note', id: ids[3], data: { n: 4 } })
  ids.push(await store(5))
  t.match(await py.line(7), { type: 'note', id: ids[4], data: { n: 5 } }, 'then live')
  t.equal(await py.exited, 0, py.stderr())
  t.equal(hub.stats.opened, 2, 'one reconnect')
  t.equal(s.app.notifier.resumer.stats.replayed, 2, 'from the id of event 2: 3 and 4 from history')
  t.same(s.app.notifier.resumer.stats.resyncs, { malformed: 0, foreign: 0, gone: 0 })
})
