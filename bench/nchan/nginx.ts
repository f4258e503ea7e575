// Nchan as a target of the harness: bench/nchan/nginx.conf.template rendered
// into a temporary directory (pid, logs, temporary files), nginx started on
// loopback (a master and one worker), measured from /proc, and stopped with
// the run. The master runs under the bench's death guard with SIGTERM (setpriv
// --pdeathsig TERM: if the bench dies, the master still stops its worker, which
// would outlive a killed master); the worker is also killed at exit, and
// `stop()` makes sure no nginx process is left.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findNginx } from '../../test/helpers/fleet-nginx.js'
import { accepts } from '../../test/helpers/listen.js'
import { freePort } from '../../test/helpers/redis.js'
import { killAtExit, spawnChild, stopProcess } from '../lib.js'
import { cpuOf } from '../load/proc.js'

/** Debian's libnginx-mod-nchan (1.3.6 on bookworm). */
export const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so'
/** What Nchan writes on an EventSource stream once it is subscribed (`: hi`): the load generator's "open". */
export const NCHAN_OPEN_COMMENT = 'hi'
/** The service's LISTEN_BACKLOG: the subscriber port's backlog unless told otherwise. */
export const DEFAULT_BACKLOG = 4096
/** worker_connections stays this far below the open-file limit: the worker's descriptors that are not connections (logs, epoll, the master's channel). */
const FD_RESERVE = 100
const TEMPLATE = new URL('./nginx.conf.template', import.meta.url)

export interface NchanOptions {
  /** The auth upstream (bench/lib.ts startUpstream), e.g. http://127.0.0.1:PORT/me. */
  upstream: string
  /** Listen backlog of the subscriber port. Default 4096. */
  backlog?: number
}

export interface Nchan {
  /** Subscribers: GET /notify. */
  port: number
  /** Publishers: POST /pub/<channel>[,<channel>...]. */
  pubPort: number
  /** worker_connections: the open-file limit minus a reserve. */
  connections: number
  /** The worker's pid now (the master starts another if one dies). */
  worker(): number
  /** CPU seconds of the master and its worker so far. */
  cpu(): number
  /**
   * Resident memory, bytes: each process's private and file-backed pages
   * (RssAnon + RssFile) summed, plus the shared memory (RssShmem: Nchan's
   * zone, mapped by the master and the worker) counted once, as the larger of
   * the two. The master touches only the pages it initialised before forking,
   * and the worker touches those again when it allocates, so the larger is the
   * union up to those few pages.
   */
  rss(): number
  /** nginx's error log so far (`warn` and above): line count and the first three. */
  log(): { lines: number; first: string[] }
  /** Why nginx died or restarted its worker (its error log says), or undefined while it runs as started. */
  crashed(): string | undefined
  /** SIGTERM (fast shutdown: the worker closes every stream), SIGKILL for any process left; removes the directory. */
  stop(): Promise<void>
}

/** The soft open-file limit of this process (nginx inherits it): /proc/self/limits. */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  if (m === null) throw new Error('no "Max open files" line in /proc/self/limits')
  return Number(m[1])
}

/** The template with every {{NAME}} replaced; a placeholder without a value is an error. */
export function renderConf(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_m, name: string) => {
    const v = values[name]
    if (v === undefined) throw new Error(`bench/nchan/nginx.conf.template: no value for {{${name}}}`)
    return String(v)
  })
}

const children = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

function status(pid: number): Record<'RssAnon' | 'RssFile' | 'RssShmem', number> {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024
  return { RssAnon: kb('RssAnon'), RssFile: kb('RssFile'), RssShmem: kb('RssShmem') }
}

const alive = (pid: number) => existsSync(`/proc/${pid}`)

const isNginx = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'nginx'
  } catch {
    return false
  }
}

export async function startNchan(o: NchanOptions): Promise<Nchan> {
  const nginx = findNginx()
  if (nginx === undefined) throw new Error('nginx not found (PATH, /usr/sbin): apt-get install nginx')
  if (!existsSync(NCHAN_MODULE)) throw new Error(`${NCHAN_MODULE} missing: apt-get install libnginx-mod-nchan`)
  const nofile = openFileLimit()
  const port = await freePort()
  let pubPort = await freePort()
  while (pubPort === port) pubPort = await freePort()
  const upstream = new URL(o.upstream)
  const dir = mkdtempSync(join(tmpdir(), 'bench-nchan-'))
  const conf = join(dir, 'nginx.conf')
  writeFileSync(
    conf,
    renderConf(readFileSync(TEMPLATE, 'utf8'), {
      MODULE: NCHAN_MODULE,
      // As root, nginx would switch its worker to `nobody`, which may not write to the directory.
      USER: process.getuid?.() === 0 ? 'user root;' : '',
      DIR: dir,
      NOFILE: nofile,
      CONNECTIONS: nofile - FD_RESERVE,
      PORT: port,
      PUB_PORT: pubPort,
      BACKLOG: o.backlog ?? DEFAULT_BACKLOG,
      AUTH_SERVER: upstream.host,
      AUTH_PATH: upstream.pathname,
    }),
  )
  const args = ['-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log')]
  const test = spawnSync(nginx, [...args, '-t'], { encoding: 'utf8' })
  if (test.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`nginx -t refuses the rendered bench/nchan/nginx.conf.template: ${test.stderr}`)
  }

  const proc = spawnChild(nginx, args, { stdio: ['ignore', 'ignore', 'pipe'] }, 'TERM')
  let stderr = ''
  proc.stderr?.on('data', (d: Buffer) => (stderr += d))
  const master = proc.pid as number
  /** Every worker seen, and the undoing of its kill at exit. */
  const workers = new Map<number, () => void>()
  // The lines at `warn` and above (nginx writes a few `info` lines while it reads the configuration).
  const errorLog = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8').split('\n').filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l))
    } catch {
      return []
    }
  }
  const stop = async () => {
    // SIGTERM: the master stops its worker (which closes every stream) and waits for it.
    await stopProcess(proc)
    for (const [pid, forget] of workers) {
      // A worker whose master was killed outlives it.
      try {
        if (isNginx(pid)) process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
      forget()
    }
    workers.clear()
    rmSync(dir, { recursive: true, force: true })
  }

  // Nothing announces the listen: poll both ports and wait for the worker.
  const deadline = Date.now() + 10_000
  let first: number | undefined
  while ((first = children(master)[0]) === undefined || !(await accepts(port)) || !(await accepts(pubPort))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop()
      throw new Error(`nginx did not start (exit ${proc.exitCode}): ${stderr}${errorLog().join('\n')}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  const track = (pid: number) => {
    if (!workers.has(pid)) workers.set(pid, killAtExit(pid))
  }
  track(first)
  const worker = () => {
    const now = children(master)[0]
    if (now !== undefined) track(now)
    return now ?? first
  }
  const pids = () => [master, worker()].filter(alive)

  return {
    port,
    pubPort,
    connections: nofile - FD_RESERVE,
    worker,
    cpu: () => pids().reduce((a, pid) => a + cpuOf(pid), 0),
    rss: () => {
      const all = pids().map(status)
      return all.reduce((a, s) => a + s.RssAnon + s.RssFile, 0) + Math.max(0, ...all.map((s) => s.RssShmem))
    },
    log: () => {
      const lines = errorLog()
      return { lines: lines.length, first: lines.slice(0, 3).map((l) => l.slice(0, 300)) }
    },
    crashed: () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return `nginx exited: code ${proc.exitCode} signal ${proc.signalCode}`
      const died = errorLog().find((l) => /worker process \d+ exited on signal/.test(l))
      if (died !== undefined) return died.slice(0, 300)
      return worker() !== first ? `worker ${first} replaced by ${worker()}` : undefined
    },
    stop,
  }
}
