// One redis-server (or sentinel) process for the topology helpers (cluster.ts,
// sentinel.ts): spawned with its log on a pipe, "ready" when its log says so
// (never a sleep), killed at teardown even if it was SIGSTOPped.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { freePort } from './redis.js'

export interface Teardown {
  teardown(fn: () => unknown): void
}

export interface RedisProcess {
  readonly port: number
  readonly pid: number
  /** False once the process has exited (killed, or died on its own). */
  readonly alive: boolean
  /** The last 64 KiB of its log, for error messages. */
  output(): string
  /** SIGKILL (after SIGCONT, so a paused process dies too); resolves on exit. */
  kill(): Promise<void>
  /** SIGSTOP: the process hangs with its sockets open, as a stuck node does. */
  pause(): void
  /** SIGCONT. */
  resume(): void
}

const KEEP = 64 * 1024
/** redis-server's line once it listens; sentinel mode never prints it, "+monitor" comes after its listen. */
export const READY = 'Ready to accept connections'
export const SENTINEL_READY = '+monitor master'

/**
 * Spawns `redis-server args` and resolves once `ready` appears in its log.
 * Rejects with the log if the process exits first. The log pipe is drained for
 * the process's whole life: a full pipe would block Redis on its next log line.
 */
export async function spawnRedis(port: number, args: string[], ready = READY, timeoutMs = 20_000): Promise<RedisProcess> {
  const [cmd = 'redis-server', ...pre] = deathGuard()
  const proc: ChildProcess = spawn(cmd, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const append = (d: Buffer) => {
    out += d.toString()
    if (out.length > 2 * KEEP) out = out.slice(-KEEP)
  }
  proc.stdout?.on('data', append)
  proc.stderr?.on('data', append)
  let exited = proc.exitCode !== null
  const exit = once(proc, 'exit').then(() => {
    exited = true
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = () => {
        if (!out.includes(ready)) return
        proc.stdout?.off('data', onData)
        resolve()
      }
      proc.stdout?.on('data', onData)
      const why = (what: string) => new Error(`redis-server ${args.slice(0, 2).join(' ')} ${what}:\n${out.slice(-4000)}`)
      void exit.then(() => reject(why(`exited before ready (${proc.exitCode ?? proc.signalCode})`)))
      proc.once('error', reject)
      // A server that neither gets ready nor exits (a replica whose master is gone) must not hang the test.
      setTimeout(() => reject(why(`not ready after ${timeoutMs} ms (waiting for "${ready}")`)), timeoutMs).unref()
    })
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  return {
    port,
    pid: proc.pid ?? -1,
    get alive() {
      return !exited
    },
    output: () => out.slice(-KEEP),
    kill: async () => {
      if (exited) return
      proc.kill('SIGCONT')
      proc.kill('SIGKILL')
      await exit
    },
    pause: () => void proc.kill('SIGSTOP'),
    resume: () => void proc.kill('SIGCONT'),
  }
}

let guard: string[] | undefined
/**
 * `setpriv --pdeathsig KILL redis-server` where util-linux has it: the kernel
 * kills the server when the test process dies without its teardown (tap kills
 * a file that times out), so no cluster outlives its test. setpriv execs, so
 * the pid is the server's own (SIGSTOP, SIGKILL reach it directly).
 */
export function deathGuard(): string[] {
  guard ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0 ? ['setpriv', '--pdeathsig', 'KILL', 'redis-server'] : ['redis-server']
  return guard
}

/**
 * A free port, and (with `bus`) whose cluster bus port, port + 10000, is free
 * too. Free now is not free later: callers retry on "Address already in use".
 */
export async function freeRedisPort(bus = false, avoid: ReadonlySet<number> = new Set()): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freePort()
    if (avoid.has(port) || (bus && (port + 10000 > 65535 || avoid.has(port + 10000) || !(await isFree(port + 10000))))) continue
    return port
  }
  throw new Error('no free port (with a free port + 10000) after 50 tries')
}

async function isFree(port: number): Promise<boolean> {
  const srv = createServer()
  try {
    srv.listen(port, '127.0.0.1')
    await once(srv, 'listening')
    return true
  } catch {
    return false
  } finally {
    if (srv.listening) {
      srv.close()
      await once(srv, 'close')
    }
  }
}

/**
 * Spawns on a free port, retrying on another port when the chosen one was
 * taken between the check and the bind (another test file, an outgoing socket).
 */
export async function spawnOnFreePort(
  argsFor: (port: number) => string[],
  opts: { bus?: boolean; avoid?: Set<number>; ready?: string } = {},
): Promise<RedisProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeRedisPort(opts.bus, opts.avoid)
    opts.avoid?.add(port)
    if (opts.bus) opts.avoid?.add(port + 10000)
    try {
      return await spawnRedis(port, argsFor(port), opts.ready)
    } catch (err) {
      if (attempt >= 5 || !String(err).includes('Address already in use')) throw err
    }
  }
}

/** Promise.all that waits for every promise to settle before rejecting, so nothing started is left untracked. */
export async function allSettled<T>(promises: Array<Promise<T>>): Promise<T[]> {
  const results = await Promise.allSettled(promises)
  const failed = results.find((r) => r.status === 'rejected')
  if (failed !== undefined) throw failed.reason
  return results.map((r) => (r as PromiseFulfilledResult<T>).value)
}

/**
 * An admin connection to one process: every command bounded (commandTimeout)
 * so a poll of a paused or dead node fails fast instead of hanging, and never
 * retried across reconnects (maxRetriesPerRequest 0) so a failed poll is just
 * "not yet". Closed at teardown.
 */
export function adminClient(t: Teardown, port: number, password?: string): Redis {
  const c = new Redis({
    host: '127.0.0.1',
    port,
    password,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    retryStrategy: () => 100,
  })
  c.on('error', () => {})
  t.teardown(() => c.disconnect())
  return c
}

/** `INFO` section as a map ("role" -> "master"). */
export async function info(c: Redis, section: string): Promise<Map<string, string>> {
  const text = await c.info(section)
  const map = new Map<string, string>()
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0) map.set(line.slice(0, i), line.slice(i + 1))
  }
  return map
}
