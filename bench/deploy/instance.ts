// One service instance of the deploy: the built server (dist/server.js) on a
// port it keeps across restarts, as a container keeps its address behind the
// balancer. (lib.ts's startService picks a new port at every start.)
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { CAPACITY, serviceScript, stopProcess } from '../lib.js'
import { eachLine } from '../load/proc.js'

/** A drain longer than this is cut short with SIGKILL (the service's own bound is SHUTDOWN_TIMEOUT_MS, 10 s). */
const KILL_AFTER_MS = 30_000
const READY_TIMEOUT_MS = 30_000
/** How often /readyz is asked while the instance starts: the resolution of "ready again". */
const READY_POLL_MS = 20

// Killed at exit if still running (lib.ts's killAtExit would keep the pid of
// every generation, and a pid freed by a restart may be someone else's by then).
const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const proc of running) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
})

export class Instance {
  #proc: ChildProcess | undefined
  /** What the processes logged (LOG_LEVEL=warn), by message: count. */
  readonly log = new Map<string, number>()

  constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get pid(): number | undefined {
    return this.#proc?.pid
  }

  /** Starts the process and resolves once GET /readyz answers 200. */
  async start(): Promise<void> {
    const [cmd, args] = deathGuarded(process.execPath, [serviceScript()])
    const proc = spawn(cmd, args, {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(this.port), LOG_LEVEL: 'warn', ...CAPACITY, ...this.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    this.#proc = proc
    running.add(proc)
    proc.once('exit', () => running.delete(proc))
    this.#drainLog(proc)
    const until = Date.now() + READY_TIMEOUT_MS
    while (Date.now() < until) {
      if (proc.exitCode !== null) throw new Error(`instance on port ${this.port} exited with code ${proc.exitCode} before it was ready`)
      const ok = await fetch(`http://127.0.0.1:${this.port}/readyz`).then((r) => r.ok, () => false)
      if (ok) return
      await new Promise((r) => setTimeout(r, READY_POLL_MS))
    }
    throw new Error(`instance on port ${this.port} not ready within ${READY_TIMEOUT_MS} ms`)
  }

  /** Reads the process's stdout (a full pipe would block its logger) and counts each message. */
  #drainLog(proc: ChildProcess): void {
    eachLine(proc.stdout, (line) => {
      if (line === '') return
      const key = logKey(line)
      this.log.set(key, (this.log.get(key) ?? 0) + 1)
    })
  }

  /** SIGTERM, and resolves once the process has exited: how it exited. */
  async stop(): Promise<string> {
    const proc = this.#proc
    if (proc === undefined) return 'not started'
    await stopProcess(proc, KILL_AFTER_MS)
    return proc.signalCode !== null ? `signal ${proc.signalCode}` : `code ${proc.exitCode}`
  }
}

/** A pino line as `msg: err.message` (no ids, ports or times, so that alike lines count together). */
function logKey(line: string): string {
  try {
    const e = JSON.parse(line) as { msg?: string; err?: { message?: string } }
    return [e.msg, e.err?.message].filter(Boolean).join(': ')
  } catch {
    return line.slice(0, 200)
  }
}

/**
 * A free loopback port below the kernel's ephemeral range. While an instance
 * is down, clients keep dialling its port; with a port in the ephemeral range
 * one of those connects could take it as its own source port (even connect to
 * itself), and the restarted instance could not listen on it.
 */
export async function portBelowEphemeral(): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
  const from = low > 12_000 ? 10_000 : 1024
  for (let i = 0; i < 200; i++) {
    const port = from + Math.floor(Math.random() * (low - from))
    const server = createServer()
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (!free) continue
    server.close()
    await once(server, 'close')
    return port
  }
  throw new Error(`no free port below ${low}`)
}

let guard: string[] | undefined
/** `setpriv --pdeathsig KILL`, where util-linux has it: the kernel kills the instance if the bench dies without its exit handlers. */
function deathGuarded(cmd: string, args: string[]): [string, string[]] {
  guard ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0 ? ['--pdeathsig', 'KILL'] : []
  return guard.length > 0 ? ['setpriv', [...guard, cmd, ...args]] : [cmd, args]
}
