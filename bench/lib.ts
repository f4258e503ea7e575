// Shared pieces of the benchmarks: a real redis-server, a real auth upstream on
// loopback, and the built service as a child process. Everything is stopped at exit.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { freePort } from '../test/helpers/redis.js'

const children: ChildProcess[] = []
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
}
process.on('exit', cleanup)
process.on('SIGINT', () => process.exit(130))

export async function startRedis(extraArgs: string[] = []): Promise<{ url: string; port: number; pid: number }> {
  const port = await freePort()
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  children.push(proc)
  await waitForOutput(proc, /Ready to accept connections/)
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
  script = fileURLToPath(new URL('../dist/server.js', import.meta.url)),
  nodeArgs: string[] = [],
): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort()
  const proc = spawn(process.execPath, [...nodeArgs, script], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...CAPACITY, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(proc)
  const base = `http://127.0.0.1:${port}`
  // Ready = subscribed to Redis; poll the probe (a benchmark harness, not a test).
  for (let i = 0; i < 200; i++) {
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
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      if (pattern.test(out)) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
  })
}
