// Memory per open stream, split the way V8 and the kernel see it: JS heap used
// and reserved, external buffers, and RSS. The app runs in this process (so
// process.memoryUsage() is the service's), the streams in two load workers.
// Usage: npm run bench:memory -- [streams=5000] [heap snapshot path]
import { writeHeapSnapshot } from 'node:v8'
import { fileURLToPath } from 'node:url'
import { Fleet } from './load/fleet.js'
import { startInProcess } from './in-process.js'

const N = Number(process.argv[2] ?? 5000)
const SNAPSHOT = process.argv[3]
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const forceGc = gc

/** Collects until the heap stops shrinking (prom-client's GC observer holds garbage for one turn). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    forceGc()
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

async function main(): Promise<void> {
  // Auth cache off: cached answers belong to tokens, not streams.
  const { app, port } = await startInProcess()
  const fleet = await Fleet.start(fileURLToPath(new URL('./run.ts', import.meta.url)), { workers: 2, bind: false, inFlight: 100 })
  await settle()
  const before = process.memoryUsage()
  const opened = await fleet.open(port, Array.from({ length: N }, (_, i) => `u${i}`), 30_000)
  await settle()
  const after = process.memoryUsage()
  const per = (k: keyof NodeJS.MemoryUsage) => +((after[k] - before[k]) / opened.ok / 1024).toFixed(2)
  console.log(
    JSON.stringify({
      streams: opened.ok,
      failed: opened.failed,
      perStreamKiB: { rss: per('rss'), heapUsed: per('heapUsed'), heapTotal: per('heapTotal'), external: per('external') },
    }),
  )
  if (SNAPSHOT !== undefined) console.log(`heap snapshot: ${writeHeapSnapshot(SNAPSHOT)}`)
  await fleet.stop()
  await app.close()
  process.exit(0)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
