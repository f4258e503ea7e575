// A stream the service ends leaves a pooling HTTP client able to make its next
// request (issue 14, item 2). The service closes the connection after a
// stream's last chunk; the head says so (`Connection: close`), or a keep-alive
// client would put the connection back in its pool and send its next request
// on a socket the service is closing: `socket hang up`.
//
// The stream is ended by `auth-expired` without racing the wall clock: the
// token is valid for 10 minutes (jose checks it against the real clock), and
// the hub's clock (AppDeps.now) stands 250 ms short of its exp until the test
// moves it past exp; the hub's expiry timer, which rechecks every 250 ms while
// the deadline is ahead, then ends the stream at its next check.
import { once } from 'node:events'
import { Agent, type IncomingMessage, request } from 'node:http'
import { SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { build, type Built } from './helpers/app.js'
import { requestsTest, runPython } from './helpers/python.js'

const SECRET = 'keep-alive-test-secret-long-enough-for-hs256'
const WAIT = { timeout: 60_000 }

interface Expiring {
  s: Built
  token: string
  /** Moves the hub's clock past the token's exp: the stream ends at the hub's next check. */
  expire(): void
  /** Connections the service accepted. */
  connections(): number
}

async function expiringStream(t: Test): Promise<Expiring> {
  const exp = Math.floor(Date.now() / 1000) + 600
  let now = (): number => exp * 1000 - 250
  const s = await build(t, { broker: 'embedded', env: { AUTH_MODE: 'jwt', JWT_SECRET: SECRET }, deps: { now: () => now() } })
  let connections = 0
  s.app.server.on('connection', () => connections++)
  const token = await new SignJWT({ sub: 'alice', exp }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))
  return {
    s,
    token,
    expire: () => {
      now = () => exp * 1000 + 1
    },
    connections: () => connections,
  }
}

/** One request through `agent`; resolves with the response and its whole body. */
async function get(agent: Agent, url: string, headers: Record<string, string> = {}): Promise<{ res: IncomingMessage; body: Promise<string> }> {
  const req = request(url, { agent, headers })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  res.setEncoding('utf8')
  const body = (async () => {
    let text = ''
    for await (const chunk of res) text += chunk
    return text
  })()
  return { res, body }
}

t.test('Node keep-alive agent: a stream ended by auth-expired, then an ordinary request on the same agent', WAIT, async (t) => {
  const { s, token, expire, connections } = await expiringStream(t)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())

  const stream = await get(agent, `${s.base}/notify`, { authorization: `Bearer ${token}`, accept: 'text/event-stream' })
  t.equal(stream.res.statusCode, 200)
  t.equal(stream.res.headers.connection, 'close', 'the head announces that the connection ends with the stream')
  expire()
  t.match(await stream.body, /event: auth-expired\ndata: \{\}\n\n$/, 'ended by auth-expired')

  // The very next request, as a pooling client sends it: at once, on the same agent.
  const health = await get(agent, `${s.base}/healthz`)
  t.equal(health.res.statusCode, 200, 'the next request succeeds')
  await health.body
  t.equal(connections(), 2, 'on a new connection: the closed one was not reused')
})

// Python's requests.Session (urllib3's pool) in a child process: it prints one
// JSON line once the stream's head is in, then one with the outcome of the
// next request on the same session.
const PYTHON_CLIENT = String.raw`
import json, sys, requests
base, token = sys.argv[1], sys.argv[2]
session = requests.Session()
stream = session.get(base + "/notify", headers={"Authorization": "Bearer " + token, "Accept": "text/event-stream"}, stream=True, timeout=30)
print(json.dumps({"status": stream.status_code, "connection": stream.headers.get("connection")}), flush=True)
body = b"".join(stream.iter_content(None)).decode()
try:
    health = session.get(base + "/healthz", timeout=30)
    outcome = {"status": health.status_code}
except Exception as err:
    outcome = {"error": repr(err)}
print(json.dumps({"body": body, **outcome}), flush=True)
`

await requestsTest(t, 'Python requests.Session: a stream ended by auth-expired, then an ordinary request on the same session', WAIT, async (t) => {
  const { s, token, expire, connections } = await expiringStream(t)
  const { line, exited, stderr } = runPython(t, PYTHON_CLIENT, [s.base, token])

  t.same(await line(1), { status: 200, connection: 'close' }, 'the stream opened; its head announces the close')
  expire()
  const after = await line(2)
  t.match(after.body, /event: auth-expired\ndata: \{\}\n\n$/, 'ended by auth-expired')
  t.same({ status: after.status, error: after.error }, { status: 200, error: undefined }, 'the next request on the session succeeds')
  t.equal(connections(), 2, 'on a new connection')
  t.equal(await exited, 0, stderr())
})
