// DEMO ONLY — NOT FOR PRODUCTION. It accepts any token of the form `demo-<userId>`
// and so lets anyone act as any user. It exists so that `docker compose up` (and
// .ci/run) have an auth upstream to talk to; in production AUTH_UPSTREAM_URL points
// at your real auth server, which answers the same contract:
//
//   GET /me  with  Authorization: Bearer <token>
//     valid token  -> 200 {"user_id":"<userId>"}   (the field is AUTH_UPSTREAM_USER_FIELD)
//     otherwise    -> 401
//   GET /healthz   -> 200 (for the compose health check)
//
// No dependencies (node:http only), so it runs on a bare node image with the file
// mounted read-only. Listens on PORT (default 9000), all interfaces.
import { createServer } from 'node:http'

const port = Number(process.env.PORT ?? 9000)
// Bounded, printable ids: the demo should not echo arbitrary input back.
const DEMO_TOKEN = /^demo-([A-Za-z0-9_.:@-]{1,128})$/

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname
  if (req.method !== 'GET') return json(res, 405, { error: 'method not allowed' })
  if (path === '/healthz') return json(res, 200, { status: 'ok' })
  if (path !== '/me') return json(res, 404, { error: 'not found' })

  // The scheme is case-insensitive (RFC 7235).
  const match = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '')
  const user = match ? DEMO_TOKEN.exec(match[1]) : null
  if (!user) {
    res.setHeader('www-authenticate', 'Bearer')
    return json(res, 401, { error: 'invalid token' })
  }
  json(res, 200, { user_id: user[1] })
})

server.listen(port, () => console.log(`demo auth upstream (NOT FOR PRODUCTION) listening on :${port}`))

// As PID 1 in a container Node gets no default signal handling: without these
// handlers `docker compose stop` would wait its full timeout and then SIGKILL.
// The notify service keeps upstream connections alive, so close those too.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}
