// A forked child process that a benchmark drives by messages: every message it
// sends is kept in an inbox until someone asks for one of its type, so an answer
// that comes before it is awaited is not lost. Used by bench/storm.ts and
// bench/deploy.ts (their client workers).
import { type ChildProcess, fork } from 'node:child_process'

export interface Worker {
  proc: ChildProcess
  inbox: { type: string; [k: string]: unknown }[]
  waiters: (() => void)[]
}

/** Forks `entry` with `args` and waits for its `ready` message. */
export function startWorker(entry: string, args: string[]): Promise<Worker> {
  const proc = fork(entry, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const w: Worker = { proc, inbox: [], waiters: [] }
  proc.on('message', (m: { type: string }) => {
    w.inbox.push(m)
    for (const wake of w.waiters.splice(0)) wake()
  })
  proc.once('exit', (code) => {
    w.inbox.push({ type: 'exit', code })
    for (const wake of w.waiters.splice(0)) wake()
  })
  return ask(w, undefined, 'ready', 30_000).then(() => w)
}

/**
 * Sends a command (none if `msg` is undefined) and waits for the reply of the
 * given type; an `error` or `exit` message from the child throws.
 */
export async function ask<T = Record<string, unknown>>(w: Worker, msg: unknown, type: string, timeoutMs: number): Promise<T> {
  if (msg !== undefined) w.proc.send(msg as object)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const k = w.inbox.findIndex((m) => m.type === type || m.type === 'error' || m.type === 'exit')
    if (k >= 0) {
      const [m] = w.inbox.splice(k, 1)
      if (m?.type !== type) throw new Error(`worker ${w.proc.pid}: ${JSON.stringify(m)}`)
      return m as T
    }
    if (Date.now() > deadline) throw new Error(`worker ${w.proc.pid}: no '${type}' within ${timeoutMs} ms`)
    await new Promise<void>((r) => {
      w.waiters.push(r)
      setTimeout(r, 1000).unref()
    })
  }
}
