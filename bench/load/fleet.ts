// The load generator's parent side: forks the workers, shares the users among
// them (each worker on its own 127.0.0.x source address), and merges what they report.
import { type ChildProcess, fork } from 'node:child_process'
import type { Opened, Report, ToWorker } from './worker.js'

export interface FleetOptions {
  workers: number
  /** Bind each worker's sockets to 127.0.0.<10 + i>; false: let the kernel pick (127.0.0.1). */
  bind: boolean
  /** Streams each worker opens at a time. */
  inFlight: number
  /** The comment that says a stream is open: `connected` (the service, the baseline; the default) or Nchan's `hi`. */
  openComment?: string
}

export interface Merged extends Omit<Report, 'type' | 'lastBySeq'> {
  lastBySeq: Map<number, number>
}

interface Worker {
  proc: ChildProcess
  inbox: { type: string; [k: string]: unknown }[]
  waiters: (() => void)[]
}

export class Fleet {
  #workers: Worker[] = []

  private constructor(private readonly opts: FleetOptions) {}

  /** Forks `opts.workers` children running `entry` with `--worker`. */
  static async start(entry: string, opts: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(opts)
    for (let i = 0; i < opts.workers; i++) {
      const proc = fork(entry, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const w: Worker = { proc, inbox: [], waiters: [] }
      proc.on('message', (m: { type: string }) => {
        w.inbox.push(m)
        for (const wake of w.waiters.splice(0)) wake()
      })
      fleet.#workers.push(w)
    }
    await Promise.all(fleet.#workers.map((w) => fleet.#next(w, 'ready', 30_000)))
    return fleet
  }

  /**
   * Opens one stream per user on `port`, spread evenly over the workers, in
   * addition to those already open (on this or another port); resolves when
   * every worker is done. The answer covers this call's streams only.
   */
  async open(port: number, users: string[], timeoutMs: number): Promise<{ ok: number; failed: number; failures: string[]; connectTimesMs: number[] }> {
    const n = this.#workers.length
    const share = Math.ceil(users.length / n)
    const answers = await Promise.all(
      this.#workers.map((w, i) =>
        this.#ask<Opened>(w, {
          cmd: 'open',
          port,
          users: users.slice(i * share, (i + 1) * share),
          ...(this.opts.bind && { localAddress: `127.0.0.${10 + i}` }),
          inFlight: this.opts.inFlight,
          openComment: this.opts.openComment ?? 'connected',
          timeoutMs,
        }, 'opened', timeoutMs * users.length),
      ),
    )
    return {
      ok: answers.reduce((a, r) => a + r.ok, 0),
      failed: answers.reduce((a, r) => a + r.failed, 0),
      failures: answers.flatMap((r) => r.failures).slice(0, 5),
      connectTimesMs: answers.flatMap((r) => r.connectTimesMs),
    }
  }

  /** From now on, workers count and time deliveries. */
  async measure(): Promise<void> {
    await Promise.all(this.#workers.map((w) => this.#ask(w, { cmd: 'measure' }, 'measuring', 10_000)))
  }

  async report(): Promise<Merged> {
    const reports = await Promise.all(this.#workers.map((w) => this.#ask<Report>(w, { cmd: 'report' }, 'report', 60_000)))
    const lastBySeq = new Map<number, number>()
    for (const r of reports) {
      for (const [seq, ms] of Object.entries(r.lastBySeq)) lastBySeq.set(Number(seq), Math.max(ms, lastBySeq.get(Number(seq)) ?? 0))
    }
    return {
      received: reports.reduce((a, r) => a + r.received, 0),
      misdelivered: reports.reduce((a, r) => a + r.misdelivered, 0),
      outOfOrder: reports.reduce((a, r) => a + r.outOfOrder, 0),
      closed: reports.reduce((a, r) => a + r.closed, 0),
      latencyMs: reports.flatMap((r) => r.latencyMs),
      lastBySeq,
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((w) => this.#ask(w, { cmd: 'close' }, 'closed', 30_000).catch(() => undefined)))
    for (const w of this.#workers) w.proc.kill()
    this.#workers = []
  }

  async #ask<T>(w: Worker, msg: ToWorker, type: string, timeoutMs: number): Promise<T> {
    w.proc.send(msg)
    return this.#next(w, type, timeoutMs) as Promise<T>
  }

  async #next(w: Worker, type: string, timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const at = w.inbox.findIndex((m) => m.type === type || m.type === 'error')
      if (at >= 0) {
        const [m] = w.inbox.splice(at, 1)
        if (m?.type === 'error') throw new Error(`worker: ${String(m.message)}`)
        return m
      }
      if (Date.now() > deadline) throw new Error(`worker: no '${type}' within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        w.waiters.push(resolve)
        setTimeout(resolve, 1000).unref()
      })
    }
  }
}
