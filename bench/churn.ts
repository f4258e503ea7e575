// Open and close many streams in rounds; after each round, force a GC and
// record the heap. A flat series means disconnects leave nothing behind.
// Usage: npm run bench:churn -- [rounds=10] [streamsPerRound=3000]
import { once } from 'node:events'
import { request } from 'node:http'
import { startInProcess } from './in-process.js'

const ROUNDS = Number(process.argv[2] ?? 10)
const PER_ROUND = Number(process.argv[3] ?? 3000)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')

async function main(): Promise<void> {
  // Auth cache off: every connect costs an upstream call, the worst case for churn.
  const { app, port } = await startInProcess()
  const hub = app.notifier.hub

  const heapMiB: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    const reqs = await Promise.all(
      Array.from({ length: PER_ROUND }, async (_, i) => {
        const req = request({ port, host: '127.0.0.1', path: '/notify', agent: false, headers: { authorization: `Bearer user-${round}-${i}` } })
        req.end()
        const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
        await once(res, 'data')
        return req
      }),
    )
    if (hub.size !== PER_ROUND) throw new Error(`expected ${PER_ROUND} open streams, got ${hub.size}`)
    const allClosed = new Promise<void>((resolve) => {
      const check = () => hub.size === 0 && (hub.off('close', check), resolve())
      hub.on('close', check)
    })
    for (const req of reqs) req.destroy()
    await allClosed
    // Let sockets finish closing before measuring.
    await new Promise((r) => setImmediate(r))
    gc?.()
    // prom-client's GC metric observes 'gc' entries; until they are delivered
    // (next turn), a second gc() in a row leaves the last round's sockets alive.
    await new Promise((r) => setImmediate(r))
    gc?.()
    gc?.()
    heapMiB.push(+(process.memoryUsage().heapUsed / 2 ** 20).toFixed(2))
  }
  await app.close()
  const firstHalf = heapMiB.slice(1, 1 + Math.floor((ROUNDS - 1) / 2))
  const secondHalf = heapMiB.slice(1 + Math.floor((ROUNDS - 1) / 2))
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN
  console.log(
    JSON.stringify({
      scenario: 'churn',
      rounds: ROUNDS,
      streamsPerRound: PER_ROUND,
      openAtEnd: hub.size,
      usersAtEnd: hub.users,
      pendingExpiries: hub.pendingExpiries,
      beating: hub.beating,
      heapAfterEachRoundMiB: heapMiB,
      medianEarlyMiB: median(firstHalf),
      medianLateMiB: median(secondHalf),
    }),
  )
  process.exit(0)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
