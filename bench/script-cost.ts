// What one call of redis/publish.lua costs Redis: N events to U users through
// the build's createPublisher, one redis-server with every user's channel
// subscribed (as an instance holding their streams would), and Redis's own
// figures: microseconds per EVALSHA (INFO commandstats) and CPU per event
// (INFO cpu). Usage: npm run bench:script -- [events=40000] [users=15000] [--service=DIR]
import { Redis } from 'ioredis'
import { resolve } from 'node:path'
import { REPO } from './lib.js'
import { buildPublisher } from './load/publisher.js'
import { startTopology } from './redis-topology.js'

const args = process.argv.slice(2)
const [events = 40_000, users = 15_000] = args.filter((a) => !a.startsWith('--')).map(Number)
const service = resolve(args.find((a) => a.startsWith('--service='))?.slice('--service='.length) ?? REPO)
const CHANNEL = 'notifications'

function cpuSeconds(info: string): number {
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1])
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1])
  return user + sys
}

const topo = await startTopology('single')
const admin = new Redis(topo.url as string)
const sub = new Redis(topo.url as string)
const build = await buildPublisher(service, { url: topo.url }, { channel: CHANNEL })
try {
  for (let u = 0; u < users; u += 1000) {
    const batch = Array.from({ length: Math.min(1000, users - u) }, (_, i) => `${CHANNEL}:{u${u + i}}`)
    await sub.call('SSUBSCRIBE', ...batch)
  }
  await admin.config('RESETSTAT')
  const cpu0 = cpuSeconds(await admin.info('cpu'))
  const inFlight = new Set<Promise<unknown>>()
  for (let i = 0; i < events; i++) {
    const p = build.publisher.publish({ recipient_id: `u${i % users}`, type: 'bench', seq: i, sent: Date.now() } as never)
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
    if (inFlight.size >= 64) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  const cpu = cpuSeconds(await admin.info('cpu')) - cpu0
  const stats = await admin.info('commandstats')
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(stats)
  console.log(JSON.stringify({
    service, events, users,
    evalshaCalls: Number(evalsha?.[1]), usecPerCall: Number(evalsha?.[2]) / Number(evalsha?.[1]),
    // seconds per event x 1e6 = microseconds per event = milliseconds per 1,000 events
    redisCpuPer1000EventsMs: Math.round((cpu / events) * 1e8) / 100,
  }))
} finally {
  build.close()
  sub.disconnect()
  admin.disconnect()
  await topo.stop()
}
