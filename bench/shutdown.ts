// How long SIGTERM takes with many open streams, and whether every client is
// told to retry. Usage: npm run bench:shutdown -- [streams=15000]
// Prints one JSON line.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { rssOf, startRedis, startService, startUpstream } from './lib.js'

const STREAMS = Number(process.argv[2] ?? 15_000)
const CONCURRENT_CONNECTS = 500
// Several loopback source addresses spread the client's ephemeral ports.
const SOURCES = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4']

interface Client {
  socket: Socket
  text: string
}

async function open(port: number, i: number): Promise<Client> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: SOURCES[i % SOURCES.length] })
  const client: Client = { socket, text: '' }
  socket.setEncoding('utf8')
  await once(socket, 'connect')
  socket.write(`GET /notify HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer user-${i}\r\n\r\n`)
  await new Promise<void>((resolve, reject) => {
    const onData = (d: string) => {
      client.text += d
      if (client.text.includes(': connected')) {
        socket.off('data', onData)
        socket.on('data', (more: string) => (client.text += more))
        resolve()
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`stream ${i} closed early: ${client.text.slice(0, 200)}`)))
  })
  return client
}

async function main(): Promise<void> {
  const redis = await startRedis()
  const upstream = await startUpstream()
  const { proc, port } = await startService({
    REDIS_URL: redis.url,
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: upstream,
    SHUTDOWN_TIMEOUT_MS: '10000',
  })
  const rssBefore = rssOf(proc.pid as number)
  const clients: Client[] = []
  const connectStart = process.hrtime.bigint()
  for (let i = 0; i < STREAMS; i += CONCURRENT_CONNECTS) {
    const batch = Array.from({ length: Math.min(CONCURRENT_CONNECTS, STREAMS - i) }, (_, k) => open(port, i + k))
    clients.push(...(await Promise.all(batch)))
  }
  const connectMs = Number(process.hrtime.bigint() - connectStart) / 1e6
  const rssWithStreams = rssOf(proc.pid as number)

  const closed = clients.map((c) => once(c.socket, 'close'))
  const exited = once(proc, 'exit') as Promise<[number | null]>
  const start = process.hrtime.bigint()
  proc.kill('SIGTERM')
  const [code] = await exited
  const exitMs = Number(process.hrtime.bigint() - start) / 1e6
  await Promise.all(closed)
  const allClosedMs = Number(process.hrtime.bigint() - start) / 1e6
  // Chunked body: the last frame is the retry hint, then the terminating chunk.
  const toldToRetry = clients.filter((c) => /retry: \d+\n\n\r\n0\r\n\r\n$/.test(c.text)).length

  console.log(
    JSON.stringify({
      scenario: 'shutdown',
      streams: STREAMS,
      connectMs: Math.round(connectMs),
      rssIdleMiB: +(rssBefore / 2 ** 20).toFixed(1),
      rssWithStreamsMiB: +(rssWithStreams / 2 ** 20).toFixed(1),
      rssPerStreamKiB: +((rssWithStreams - rssBefore) / STREAMS / 1024).toFixed(2),
      exitCode: code,
      exitMs: Math.round(exitMs),
      allClientsClosedMs: Math.round(allClosedMs),
      toldToRetry,
    }),
  )
  process.exit(code === 0 && toldToRetry === STREAMS ? 0 : 1)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
