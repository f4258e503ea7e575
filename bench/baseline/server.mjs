// The naive design, for comparison only (never shipped): every browser
// connection opens its own Redis subscription to the whole channel, and every
// connection parses every event to see whether it is its user's. Same wire
// behaviour as the service for the harness: GET /notify with a bearer token
// checked against the auth upstream, `: connected` once subscribed, one frame
// per event for this user, a heartbeat every 15 s. Env: PORT, HOST, REDIS_URL,
// AUTH_UPSTREAM_URL, NOTIFY_CHANNEL.
import { createServer } from 'node:http'
import { Redis } from 'ioredis'

const { PORT = '8090', HOST = '127.0.0.1', REDIS_URL, AUTH_UPSTREAM_URL, NOTIFY_CHANNEL = 'notifications' } = process.env
if (!REDIS_URL || !AUTH_UPSTREAM_URL) throw new Error('REDIS_URL and AUTH_UPSTREAM_URL are required')

const server = createServer(async (req, res) => {
  if (req.url === '/readyz' || req.url === '/healthz') return res.end('ok')
  if (req.url !== '/notify') return res.writeHead(404).end()
  const answer = await fetch(AUTH_UPSTREAM_URL, { headers: { authorization: req.headers.authorization ?? '' } }).catch(() => null)
  if (answer === null || !answer.ok) return res.writeHead(answer === null ? 503 : 401).end()
  const user = String((await answer.json()).user_id)
  const subscriber = new Redis(REDIS_URL, { lazyConnect: true })
  const heartbeat = setInterval(() => res.write(':\n\n'), 15_000)
  req.socket.once('close', () => {
    clearInterval(heartbeat)
    subscriber.disconnect()
  })
  subscriber.on('error', () => res.destroy())
  subscriber.on('message', (_channel, message) => {
    const event = JSON.parse(message)
    const ids = event.recipient_ids ?? [event.recipient_id]
    if (!ids.some((id) => String(id) === user)) return
    res.write(`event: ${event.type ?? 'message'}\ndata: ${message}\n\n`)
  })
  try {
    await subscriber.connect()
    await subscriber.subscribe(NOTIFY_CHANNEL)
  } catch {
    return res.writeHead(503).end()
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.write(': connected\n\n')
})
server.requestTimeout = 0
server.listen(Number(PORT), HOST)
process.on('SIGTERM', () => process.exit(0))
