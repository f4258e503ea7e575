// What the kernel says about a process: memory and CPU time, from /proc.
import { readFileSync } from 'node:fs'
import type { Readable } from 'node:stream'

/** Resident set size now and at its peak (VmHWM), in bytes. */
export function memOf(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** CPU time (user + system) of a process, in seconds; 10 ms resolution (USER_HZ 100). */
export function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/**
 * Context switches of a process so far: voluntary (it blocked, e.g. an event
 * loop with nothing to do waiting in epoll: one per wake-up) and involuntary
 * (the scheduler took the core away).
 */
export function switchesOf(pid: number): { voluntary: number; involuntary: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const n = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN)
  return { voluntary: n('voluntary_ctxt_switches'), involuntary: n('nonvoluntary_ctxt_switches') }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until a process has used under 5 % of a core for a whole second (the connect burst is over). */
export async function quiet(pid: number, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  let last = cpuOf(pid)
  while (Date.now() < until) {
    await sleep(1000)
    const now = cpuOf(pid)
    if (now - last < 0.05) return
    last = now
  }
}

/**
 * A process's RSS once V8 has handed back what it will (its memory reducer
 * runs some seconds after allocation calms down): sampled every second until
 * it has not shrunk for `stableS` seconds, or `maxS` have passed.
 */
export async function restingRss(pid: number, stableS = 15, maxS = 90): Promise<number> {
  let low = memOf(pid).rss
  let since = Date.now()
  const until = Date.now() + maxS * 1000
  while (Date.now() < until && Date.now() - since < stableS * 1000) {
    await sleep(1000)
    const rss = memOf(pid).rss
    if (rss < low - 256 * 1024) {
      low = rss
      since = Date.now()
    }
  }
  return Math.min(low, memOf(pid).rss)
}

/**
 * Calls `fn` with each complete line a process writes (a line split across two
 * chunks is joined first). Reading also keeps the pipe from filling up, which
 * would block the process's logger.
 */
export function eachLine(out: Readable | null, fn: (line: string) => void): void {
  let partial = ''
  out?.setEncoding('utf8')
  out?.on('data', (d: string) => {
    const lines = (partial + d).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) fn(line)
  })
}
