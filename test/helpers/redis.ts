// Starts a real redis-server on a free port for a test, and stops it at teardown.
// Set TEST_REDIS_URL to use an existing server instead (restart() is then unavailable).
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { deathGuard } from './redis-proc.js'

export interface TestRedis {
  url: string
  port: number
  /** A plain client (not in subscriber mode), closed at teardown. */
  client(): Redis
  /** Stops the server, then starts it again on the same port. */
  restart(): Promise<void>
  stop(): Promise<void>
  start(): Promise<void>
  /** SIGSTOP: the server hangs with its connections open (a hung process, a partition). */
  pause(): void
  /** SIGCONT. */
  resume(): void
  canRestart: boolean
}

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface StartRedisOptions {
  /**
   * Keep data across stop/start: an append-only file fsynced on every write, in
   * a temporary directory removed at teardown; stop() sends SIGTERM (a clean
   * shutdown) instead of SIGKILL. Default false: nothing survives a restart.
   */
  persist?: boolean
  /** Extra redis-server arguments (e.g. `--rename-command SSUBSCRIBE ""`). */
  args?: string[]
}

export async function freePort(): Promise<number> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  srv.close()
  await once(srv, 'close')
  return port
}

export async function startRedis(t: Teardown, opts: StartRedisOptions = {}): Promise<TestRedis> {
  const clients: Redis[] = []
  const client = (url: string) => {
    const c = new Redis(url, { maxRetriesPerRequest: 1 })
    c.on('error', () => {})
    clients.push(c)
    return c
  }
  t.teardown(() => Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect()))))

  const external = process.env.TEST_REDIS_URL
  if (external) {
    const port = Number(new URL(external).port || 6379)
    const unavailable = () => Promise.reject(new Error('restart needs a redis-server started by the tests'))
    const cannot = () => {
      throw new Error('pause needs a redis-server started by the tests')
    }
    return {
      url: external, port, client: () => client(external), restart: unavailable, stop: unavailable, start: unavailable,
      pause: cannot, resume: cannot, canRestart: false,
    }
  }

  const port = await freePort()
  const dir = opts.persist ? await mkdtemp(join(tmpdir(), 'notify-redis-')) : undefined
  const persistence = dir === undefined ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]
  let proc: ChildProcess | undefined
  const start = async () => {
    // Under a death guard: a test process killed by its timeout leaves no server behind.
    const [cmd = 'redis-server', ...pre] = deathGuard()
    proc = spawn(cmd, [...pre, '--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, ...(opts.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    await new Promise<void>((resolve, reject) => {
      proc?.stdout?.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('Ready to accept connections')) resolve()
      })
      proc?.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)))
      proc?.once('error', reject)
    })
  }
  let paused = false
  const stop = async () => {
    if (proc === undefined || proc.exitCode !== null) return
    const p = proc
    // A stopped process would not act on SIGTERM.
    if (paused) p.kill('SIGCONT')
    paused = false
    const exited = once(p, 'exit')
    // SIGTERM lets a persistent server shut down cleanly (its append-only file complete).
    p.kill(dir === undefined ? 'SIGKILL' : 'SIGTERM')
    await exited
  }
  await start()
  t.teardown(async () => {
    await stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })
  const url = `redis://127.0.0.1:${port}`
  return {
    url,
    port,
    client: () => client(url),
    restart: async () => {
      await stop()
      await start()
    },
    stop,
    start,
    pause: () => {
      paused = true
      proc?.kill('SIGSTOP')
    },
    resume: () => {
      paused = false
      proc?.kill('SIGCONT')
    },
    canRestart: true,
  }
}
