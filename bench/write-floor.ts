// The floor under `broadcast` and under CPU per delivery on this machine: a
// bare node:net server writes one 100-byte frame to each of N loopback
// sockets in one loop, with nothing else around (no HTTP, no SSE, no Redis).
// Readers in 4 child processes stamp the last arrival with the monotonic clock.
// Usage: npm run bench:write-floor -- [sockets=10000] [repetitions=7]
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { median } from './load/stats.js'

const N = Number(process.argv[2] ?? 10_000)
const REPS = Number(process.argv[3] ?? 7)
const READERS = 4
const FRAME = Buffer.alloc(100, 0x61)

type FromReader = { connected: number } | { last: string; bytes: number }

async function reader(port: number, count: number): Promise<void> {
  const sockets: Socket[] = []
  let pending = 0
  let last = 0n
  let bytes = 0
  const onData = (chunk: Buffer) => {
    bytes += chunk.length
    last = process.hrtime.bigint()
    if (--pending === 0) process.send?.({ last: String(last), bytes })
  }
  for (let i = 0; i < count; i++) {
    const s = connect(port, '127.0.0.1')
    s.on('data', onData)
    sockets.push(s)
    await once(s, 'connect')
  }
  process.on('message', (m: { expect: number }) => {
    pending = m.expect
    bytes = 0
  })
  process.send?.({ connected: sockets.length })
}

async function main(): Promise<void> {
  const accepted: Socket[] = []
  const server = createServer((s) => {
    s.setNoDelay(true)
    accepted.push(s)
  })
  server.listen(0, '127.0.0.1', 4096)
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const per = Math.ceil(N / READERS)
  const readers = Array.from({ length: READERS }, () => fork(new URL(import.meta.url).pathname, ['--reader', String(port), String(per)], { execArgv: process.execArgv }))
  await Promise.all(readers.map((r) => once(r, 'message')))
  const results: { loopMs: number; lastMs: number; cpuUsPerWrite: number }[] = []
  for (let rep = 0; rep < REPS; rep++) {
    const arrivals = readers.map((r) => once(r, 'message') as Promise<[FromReader]>)
    for (const r of readers) r.send({ expect: per })
    await new Promise((resolve) => setTimeout(resolve, 300))
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    for (const s of accepted) s.write(FRAME)
    const loopMs = Number(process.hrtime.bigint() - t0) / 1e6
    const lasts = (await Promise.all(arrivals)).map(([m]) => BigInt((m as { last: string }).last))
    const cpu = process.cpuUsage(cpu0)
    const lastMs = Number(lasts.reduce((a, b) => (a > b ? a : b)) - t0) / 1e6
    results.push({ loopMs, lastMs, cpuUsPerWrite: (cpu.user + cpu.system) / accepted.length })
  }
  const pick = (k: keyof (typeof results)[number]) => +median(results.map((r) => r[k])).toFixed(1)
  console.log(JSON.stringify({
    sockets: accepted.length,
    repetitions: REPS,
    medians: { loopMs: pick('loopMs'), lastDeliveryMs: pick('lastMs'), cpuUsPerWrite: pick('cpuUsPerWrite') },
    runs: results.map((r) => ({ loopMs: +r.loopMs.toFixed(1), lastMs: +r.lastMs.toFixed(1), cpuUsPerWrite: +r.cpuUsPerWrite.toFixed(1) })),
  }))
  for (const r of readers) r.kill()
  server.close()
  for (const s of accepted) s.destroy()
}

if (process.argv[2] === '--reader') {
  void reader(Number(process.argv[3]), Number(process.argv[4]))
} else {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
