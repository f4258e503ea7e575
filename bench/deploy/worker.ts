// A client worker of the deploy bench (a forked child process): holds a share
// of the streams as reconnecting clients (event-source.ts), records what each
// one receives, and at the end checks that against what the publisher
// acknowledged. Run with --deploy-worker; driven by bench/deploy.ts.
import type { SseEvent } from '../load/sse-reader.js'
import { checkDeliveries, type DeliveryCheck, type Received } from './delivery.js'
import { type Attempt, Client, type ClientHooks } from './event-source.js'

export type ToWorker =
  | {
      cmd: 'open'
      /** The run's clock origin (process.hrtime.bigint(), the same monotonic clock in every process). */
      t0: string
      /** The instances, in the balancer's order. */
      ports: number[]
      users: string[]
      /** Per user, the port of its first stream (the streams are spread evenly). */
      homes: number[]
      /** Where this worker's balancer starts its rotation. */
      turn: number
      /** Streams being opened at a time. */
      inFlight: number
      /** How long, in all, until every stream is live. */
      timeoutMs: number
    }
  | { cmd: 'all-live'; timeoutMs: number }
  | { cmd: 'finish'; acked: [string, number[]][]; timeoutMs: number; graceMs: number }
  | { cmd: 'close' }

export interface Opened {
  type: 'opened'
  ok: number
  failed: number
  /** Streams live only after a reconnect of their own (their first connect gave no stream). */
  retried: number
  /** A few of the failed, to say why. */
  failures: string[]
}

export interface AllLive {
  type: 'all-live'
  live: number
  total: number
}

export interface Finished {
  type: 'finished'
  /** Streams still short of their user's last acknowledged event at the deadline. */
  behind: number
  /** When the last of them got it (ms after t0). */
  caughtUpAt: number
  delivery: DeliveryCheck
  timelines: Attempt[][]
}

/** An event of the deploy's publisher: its user and its per-user sequence number. */
function seqOf(e: SseEvent, user: string): number | undefined {
  if (e.type !== 'deploy') return undefined
  try {
    const ev = JSON.parse(e.data) as { recipient_id?: unknown; seq?: unknown }
    return String(ev.recipient_id) === user && typeof ev.seq === 'number' ? ev.seq : undefined
  } catch {
    return undefined
  }
}

export function runWorker(): void {
  const send = (m: Opened | AllLive | Finished | { type: 'ready' | 'closed' | 'error'; message?: string }) => process.send?.(m)
  let t0 = 0n
  const now = () => Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100
  let clients: Client[] = []
  let received: Received[] = []
  let live = 0
  /** Per stream, its user's last acknowledged seq, once the deploy is over. */
  let targets: (number | undefined)[] = []
  let behind = 0
  /** Whoever awaits a count (until) is woken by every change. */
  let wake: (() => void) | undefined
  const firstChange = new Map<number, () => void>()

  const hooksFor = (k: number, next: (failed?: number) => number): ClientHooks => ({
    now,
    next,
    event: (c, e) => {
      const r = received[k] as Received
      if (e.type === 'resync') return void r.resyncs++
      const seq = seqOf(e, c.user)
      if (seq === undefined) return void r.foreign++
      r.seqs.push(seq)
      if (seq === targets[k]) {
        targets[k] = undefined
        behind--
        wake?.()
      }
    },
    change: (_c, attempt) => {
      if (attempt.endAt === null) live++
      else if (attempt.liveAt !== null) live--
      firstChange.get(k)?.()
      firstChange.delete(k)
      wake?.()
    },
  })

  const open = async (m: Extract<ToWorker, { cmd: 'open' }>) => {
    t0 = BigInt(m.t0)
    let turn = m.turn
    // The balancer: a round robin over the instances shared by this worker's
    // streams; a connect that failed is retried on the instance after the one
    // that failed, as nginx's proxy_next_upstream does.
    const next = (failed?: number) => {
      const k = failed === undefined ? turn++ : m.ports.indexOf(failed) + 1
      return m.ports[k % m.ports.length] as number
    }
    clients = m.users.map((u, k) => new Client(u, hooksFor(k, next)))
    received = m.users.map((user) => ({ user, seqs: [], resyncs: 0, foreign: 0 }))
    let k = 0
    const lane = async () => {
      for (let i = k++; i < clients.length; i = k++) {
        const c = clients[i] as Client
        await new Promise<void>((resolve) => {
          firstChange.set(i, resolve)
          c.dial(m.homes[i] as number)
        })
      }
    }
    await Promise.all(Array.from({ length: m.inFlight }, lane))
    // A stream turned away (the service could not reach Redis in time, say) comes back by itself.
    await until(() => live === clients.length, m.timeoutMs)
    const failed = clients.filter((c) => !c.live)
    send({
      type: 'opened',
      ok: clients.length - failed.length,
      failed: failed.length,
      retried: clients.filter((c) => c.timeline[0]?.liveAt === null).length,
      failures: failed.slice(0, 3).map((c) => `${c.user}: ${c.timeline.map((a) => a.outcome).join(', ')}`),
    } satisfies Opened)
  }

  const finish = async (m: Extract<ToWorker, { cmd: 'finish' }>) => {
    const acked = new Map(m.acked)
    targets = clients.map((c, k) => {
      const last = Math.max(...(acked.get(c.user) ?? []))
      return Number.isFinite(last) && !(received[k] as Received).seqs.includes(last) ? last : undefined
    })
    behind = targets.filter((t) => t !== undefined).length
    await until(() => behind === 0, m.timeoutMs)
    const caughtUpAt = now()
    // A late duplicate would arrive now.
    await new Promise((r) => setTimeout(r, m.graceMs))
    send({ type: 'finished', behind, caughtUpAt, delivery: checkDeliveries(received, acked), timelines: clients.map((c) => c.timeline) } satisfies Finished)
  }

  /** Resolves when `ready()` holds (checked at every change), or false after `timeoutMs`. */
  const until = (ready: () => boolean, timeoutMs: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (ready()) return resolve(true)
      const timer = setTimeout(() => {
        wake = undefined
        resolve(false)
      }, timeoutMs)
      wake = () => {
        if (!ready()) return
        clearTimeout(timer)
        wake = undefined
        resolve(true)
      }
    })

  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: ToWorker) => {
    const run = async () => {
      switch (m.cmd) {
        case 'open':
          return open(m)
        case 'all-live':
          await until(() => live === clients.length, m.timeoutMs)
          return send({ type: 'all-live', live, total: clients.length } satisfies AllLive)
        case 'finish':
          return finish(m)
        case 'close':
          for (const c of clients) c.stop()
          return send({ type: 'closed' })
      }
    }
    run().catch((err: unknown) => send({ type: 'error', message: String((err as Error)?.stack ?? err) }))
  })
  send({ type: 'ready' })
}

if (process.argv.includes('--deploy-worker')) runWorker()
