// The server a storm (bench/storm.ts) measures, behind one interface so that
// the storm reads every target the same way: the built service (here, on Redis
// or its embedded broker) or Nchan (bench/nchan/storm-server.ts). Loaded by
// the storm's parent process only: its workers never import lib.ts.
import { writeFileSync } from 'node:fs'
import { startService, stopProcess } from './lib.js'
import { cpuOf, eachLine, memOf } from './load/proc.js'
import type { BuildPublisher } from './load/publisher.js'

/** Publishes one event per entry, in order; resolves with their ids as the streams will carry them. */
export type Publish = (events: { recipient_id: string; type: string; n: number }[]) => Promise<string[]>

export interface StormServer {
  /** Streams connect here: GET /notify. */
  port: number
  /** The comment that says a stream is open: `connected`, Nchan's `hi`. */
  openComment: string
  /** The process that holds the streams: its file descriptors, waited on until quiet. */
  pid(): number
  /** CPU seconds so far of the server's processes. */
  cpu(): number
  /** Resident memory now, bytes. */
  rss(): number
  /**
   * Resets the peak RSS the kernel keeps for the process (VmHWM) and returns
   * its reader; undefined where that is not possible or no one process's peak
   * is the server's (nginx's master and worker): the storm's polling alone says.
   */
  resetPeak(): (() => number) | undefined
  /** How it died (exit code, signal, a worker's crash), or undefined while it runs. */
  exited(): string | undefined
  publish: Publish
  /** What the server logged, as evidence for the result. */
  evidence(): Record<string, unknown>
  stop(): Promise<void>
}

export interface ServiceStormOptions {
  /** The build's dist/server.js. */
  script: string
  upstream: string
  /** The Redis broker and the build's publisher on it; undefined: the embedded broker, events by POST /publish. */
  redis: { url: string; publisher: BuildPublisher['publisher'] } | undefined
  /** Keep AUTH_CACHE_TTL_MS at 30 s; otherwise 0, so that every reconnect costs one upstream call. */
  authCache: boolean
  /** LISTEN_BACKLOG; undefined: the service's default. */
  backlog: string | undefined
  historySize: number
}

const PUBLISH_TOKEN = 'storm-bench-publish-token'

export async function startServiceStormServer(o: ServiceStormOptions): Promise<StormServer> {
  const env: Record<string, string> = {
    AUTH_MODE: 'upstream',
    AUTH_UPSTREAM_URL: o.upstream,
    AUTH_CACHE_TTL_MS: o.authCache ? '30000' : '0',
    HISTORY_SIZE: String(o.historySize),
    SHUTDOWN_TIMEOUT_MS: '10000',
  }
  if (o.backlog !== undefined) env.LISTEN_BACKLOG = o.backlog
  if (process.env.STORM_SERVICE_NODE_OPTIONS) env.NODE_OPTIONS = process.env.STORM_SERVICE_NODE_OPTIONS
  if (o.redis === undefined) env.PUBLISH_TOKEN = PUBLISH_TOKEN
  else env.REDIS_URL = o.redis.url
  const { proc, port } = await startService(env, o.script)
  const pid = proc.pid as number
  // Drain the service's stdout (a full pipe would block its logger) and keep
  // evidence: its warnings (rate-limited by the service), and request errors by code.
  const warnings: string[] = []
  const requestErrors: Record<string, number> = {}
  eachLine(proc.stdout, (line) => {
    let entry: { level?: number; reqId?: string; msg?: string; err?: { code?: string | number; message?: string }; res?: { statusCode?: number } }
    try {
      entry = JSON.parse(line)
    } catch {
      if (warnings.length < 30) warnings.push(line.slice(0, 300))
      return
    }
    if (entry.reqId !== undefined && entry.res !== undefined) {
      const key = `${entry.res.statusCode} ${entry.err?.code ?? entry.msg}`
      requestErrors[key] = (requestErrors[key] ?? 0) + 1
    } else if (warnings.length < 30) {
      warnings.push(line.slice(0, 400))
    }
  })
  let exited: string | undefined
  proc.once('exit', (code, signal) => (exited ??= `exit code ${code} signal ${signal}`))

  const redis = o.redis
  const publish: Publish =
    redis === undefined
      ? async (events) => {
          const res = await fetch(`http://127.0.0.1:${port}/publish`, {
            method: 'POST',
            headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify(events),
          })
          if (res.status !== 202) throw new Error(`POST /publish: ${res.status} ${await res.text()}`)
          const { published } = (await res.json()) as { published: { id: string }[] }
          return published.map((p) => p.id)
        }
      : async (events) => (await redis.publisher.publish(events)).map((p) => p.id as string)

  return {
    port,
    openComment: 'connected',
    pid: () => pid,
    cpu: () => cpuOf(pid),
    rss: () => memOf(pid).rss,
    resetPeak: () => {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5') // resets VmHWM to the current RSS
        return () => memOf(pid).hwm
      } catch {
        return undefined
      }
    },
    exited: () => exited,
    publish,
    evidence: () => ({
      ...(Object.keys(requestErrors).length > 0 && { serviceRequestErrors: requestErrors }),
      ...(warnings.length > 0 && { serviceWarnings: warnings }),
    }),
    stop: () => stopProcess(proc),
  }
}
