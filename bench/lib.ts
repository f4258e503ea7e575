// Shared pieces of the benchmarks: a real redis-server, a real auth upstream on
// loopback, and the built service as a child process. Everything is stopped at
// exit: normally, on an error, on Ctrl-C or SIGTERM, and by the kernel if this
// process dies without running its handlers (setpriv --pdeathsig, where util-linux has it).
import { type ChildProcess, spawn, type SpawnOptions, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../test/helpers/redis.js'

const children: ChildProcess[] = []
/** Processes started by others (the Cluster helper's redis-servers): SIGKILLed at exit too. */
const extraPids = new Set<number>()
/** Asynchronous clean-ups (a Cluster's teardown) run on a signal before exiting. */
const cleanups = new Set<() => Promise<unknown>>()
const killAll = () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const pid of extraPids) {
    try {
      process.kill(pid, 'SIGCONT')
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll)
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    const done = () => process.exit(code)
    setTimeout(done, 5000).unref()
    Promise.allSettled([...cleanups].map((fn) => fn())).then(done, done)
  })
}

/** Registers a clean-up to run on a signal; returns its unregistration. */
export function atSignal(fn: () => Promise<unknown>): () => void {
  cleanups.add(fn)
  return () => cleanups.delete(fn)
}

/**
 * Kills `pid` at exit (processes this module did not spawn). Returns the
 * undoing, for a process that is gone before: its pid may be someone else's by then.
 */
export function killAtExit(pid: number): () => void {
  extraPids.add(pid)
  return () => extraPids.delete(pid)
}

/** Stops the bench by itself: after `ms`, whatever it is doing (exit code 2, children killed). */
export function deadline(ms: number, what: string): void {
  setTimeout(() => {
    console.error(`${what}: global time limit of ${Math.round(ms / 1000)} s reached`)
    process.exit(2)
  }, ms).unref()
}

let guardable: boolean | undefined
/**
 * `setpriv --pdeathsig KILL <cmd>`: the kernel kills the child when this process
 * dies without its exit handlers (SIGKILL, a crash). setpriv execs, so the pid is
 * the child's own (/proc figures stay right). `signal` TERM instead lets a child
 * that has children of its own (nginx's master) stop them first.
 */
function guarded(cmd: string, args: string[], signal: 'KILL' | 'TERM' = 'KILL'): [string, string[]] {
  guardable ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0
  return guardable ? ['setpriv', ['--pdeathsig', signal, cmd, ...args]] : [cmd, args]
}

/** Spawns `cmd` under the death guard; killed at exit like every other process the bench starts. */
export function spawnChild(cmd: string, args: string[], opts: SpawnOptions, deathSignal: 'KILL' | 'TERM' = 'KILL'): ChildProcess {
  const [c, a] = guarded(cmd, args, deathSignal)
  const proc = spawn(c, a, opts)
  children.push(proc)
  return proc
}

/** This repository: its build (dist/) is the default service under test. */
export const REPO = fileURLToPath(new URL('..', import.meta.url))

/** The service entry of a build: `<dir>/dist/server.js` (a checkout of another commit, built). */
export function serviceScript(dir = REPO): string {
  return join(dir, 'dist', 'server.js')
}

export async function startRedis(extraArgs: string[] = []): Promise<{ url: string; port: number; pid: number }> {
  const port = await freePort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs]
  const proc = spawnChild('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] })
  await waitForOutput(proc, /Ready to accept connections/)
  // Keep draining its log: a full pipe would block Redis on its next line.
  proc.stdout?.resume()
  return { url: `redis://127.0.0.1:${port}`, port, pid: proc.pid as number }
}

/** Auth upstream: `Bearer user-<id>` -> {"user_id": "<id>"}. */
export async function startUpstream(): Promise<string> {
  const server = createServer((req, res) => {
    const token = (req.headers.authorization ?? '').slice('Bearer '.length)
    if (!token.startsWith('user-')) {
      res.writeHead(401).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user_id: token.slice(5) }))
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  server.unref()
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/me`
}

/**
 * Benchmarks measure capacity from a few loopback addresses: the per-IP connect
 * rate and the total cap, which protect a production instance, would stop them.
 */
export const CAPACITY = { CONNECT_RATE_PER_MIN: '0', MAX_CONNECTIONS: '1000000' }

/** The built service (or another server script taking the same env, such as the baseline). */
export async function startService(
  env: Record<string, string>,
  script = serviceScript(),
  nodeArgs: string[] = [],
): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort()
  const proc = spawnChild(process.execPath, [...nodeArgs, script], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...CAPACITY, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const base = `http://127.0.0.1:${port}`
  // Ready = subscribed to Redis; poll the probe (a benchmark harness, not a test).
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`service exited with code ${proc.exitCode} before it was ready`)
    const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false)
    if (ok) return { proc, port }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('service did not become ready')
}

/** SIGTERM, so that the process can write what it must (a --cpu-prof profile); SIGKILL after `ms`. */
export async function stopProcess(proc: ChildProcess, ms = 15_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = once(proc, 'exit')
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), ms)
  await exited
  clearTimeout(timer)
}

/** Resident set size of a process, in bytes, from /proc. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : NaN
}

function waitForOutput(proc: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer) => {
      out += d.toString()
      if (!pattern.test(out)) return
      proc.stdout?.off('data', onData)
      resolve()
    }
    proc.stdout?.on('data', onData)
    proc.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
  })
}
