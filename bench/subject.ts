// What a run of bench/run.ts measures, whatever the target: where its streams
// connect, how events reach it, and its CPU and memory, so that run.ts reads
// every target the same way. The service and the baseline run on Redis
// (bench/redis-topology.ts) and take events by PUBLISH; Nchan is nginx alone
// and takes them over HTTP (bench/nchan/subject.ts).
import { fileURLToPath } from 'node:url'
import type { Sender } from './load/publisher.js'
import { cpuOf, memOf, restingRss } from './load/proc.js'
import { CAPACITY, serviceScript, startService, stopProcess } from './lib.js'
import { type CommandStats, startTopology } from './redis-topology.js'
import { CHANNEL, makeSender, redisCpu, serviceLog } from './run-common.js'
import type { Options, Target } from './run-options.js'

const BASELINE = fileURLToPath(new URL('./baseline/server.mjs', import.meta.url))

export interface Subject {
  /** Streams connect here: GET /notify. */
  port: number
  /** The comment that tells the load generator a stream is open: `: connected`, Nchan's `: hi`. */
  openComment: string
  /** How events reach it (a result's `publish`). */
  publish: string
  /** Its Redis (a result's `redis`): single, cluster, or none. */
  redis: string
  sender: Sender
  /** The process that holds the streams (waited on until it is quiet). */
  pid(): number
  /** CPU seconds so far: the server's own processes, and Redis's (0 without Redis). */
  cpu(): { service: number; redis: number }
  /** Resident memory of the server, bytes. */
  rss(): number
  /** RSS once the server has given back what it will after a burst. */
  restingRss(): Promise<number>
  /** Redis's command counts so far (none without Redis). */
  commandStats(): Promise<CommandStats>
  /** The server's log: line count and the first lines, as evidence. */
  log(): { lines: number; first: string[] }
  /** Why it died (exit code, signal), or undefined while it runs. */
  crashed(): number | string | undefined
  /**
   * Stops the server before anything else, so that the closed streams wait
   * out TIME_WAIT on its side: closed from the workers' side, 19,000 TIME_WAIT
   * sockets on their bound source addresses slowed the next run's connects
   * (bind looks for a free port among them): 7 s -> 18-25 s. Then its Redis.
   */
  stop(): Promise<void>
  /** What its figures count, where that is not obvious (Nchan's processes). */
  measured?: Record<string, string>
}

/** The built service (or the baseline) on Redis, with the auth upstream at `upstream`. */
export async function startServiceSubject(o: Options, target: Exclude<Target, 'nchan'>, upstream: string): Promise<Subject> {
  // The baseline holds one Redis connection per stream.
  const topo = await startTopology(o.redis, target === 'baseline' ? ['--maxclients', '100000'] : [])
  try {
    const env = { ...topo.env, AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: upstream, NOTIFY_CHANNEL: CHANNEL, ...CAPACITY, ...o.env }
    const service = await startService(env, target === 'baseline' ? BASELINE : serviceScript(o.service), o.nodeArgs)
    const log = serviceLog(service.proc)
    const pid = service.proc.pid as number
    const pub = await makeSender(o, topo).catch(async (err: unknown) => {
      await stopProcess(service.proc)
      throw err
    })
    return {
      port: service.port,
      openComment: 'connected',
      publish: o.publish === 'script' ? `script (${pub.routing})` : 'plain PUBLISH',
      redis: o.redis,
      sender: pub.sender,
      pid: () => pid,
      cpu: () => ({ service: cpuOf(pid), redis: redisCpu(topo) }),
      rss: () => memOf(pid).rss,
      // An idle service also gives back its start-up garbage (25 MiB here) within half a minute.
      restingRss: () => restingRss(pid),
      commandStats: () => topo.commandStats(),
      log: () => log,
      crashed: () => service.proc.exitCode ?? service.proc.signalCode ?? undefined,
      stop: async () => {
        pub.close()
        await stopProcess(service.proc)
        await topo.stop()
      },
    }
  } catch (err) {
    await topo.stop()
    throw err
  }
}
