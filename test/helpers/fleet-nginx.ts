// A real nginx running deploy/nginx-fleet.conf for the fleet tests: only the
// upstream's server addresses and the `listen` address are rewritten. Two
// workers, as in production (the upstream's `zone` shares their balancing and
// failure marks); the http block around the file logs, for every request, when
// it ended, how long it took and which instances nginx tried, so a test can
// tell where each connect landed.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { accepts } from './listen.js'
import { freePort } from './redis.js'
import { waitFor } from './wait.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const CONF = new URL('../../deploy/nginx-fleet.conf', import.meta.url)

/** nginx on PATH or in the sbin directories (not on every user's PATH); undefined when absent. */
export function findNginx(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, 'nginx'), constants.X_OK)
      return join(dir, 'nginx')
    } catch {}
  }
  return undefined
}

/** One request as nginx logged it. */
export interface Access {
  /** When nginx read the request (ms since the epoch). */
  start: number
  end: number
  method: string
  path: string
  status: number
  /** Every instance port nginx tried, in order; the last one answered. */
  upstreams: number[]
}

export interface FleetNginx {
  port: number
  /** The access log so far. */
  accesses(): Promise<Access[]>
  /** nginx's own complaints so far (error log lines at `warn` and above), for failure messages. */
  complaints(): Promise<string[]>
}

/** deploy/nginx-fleet.conf with its upstream servers on `ports` (in order) and listening on 127.0.0.1:`listen`. */
export function renderFleetConf(conf: string, ports: number[], listen: number): string {
  let i = 0
  const upstream = conf.replace(/^(\s*server\s+)[^\s:;]+:\d+/gm, (_m, lead: string) => {
    const port = ports[i++]
    if (port === undefined) throw new Error('deploy/nginx-fleet.conf has more upstream servers than instances')
    return `${lead}127.0.0.1:${port}`
  })
  if (i !== ports.length) throw new Error(`deploy/nginx-fleet.conf: ${i} upstream servers for ${ports.length} instances`)
  const listened = upstream.replace(/^(\s*listen\s+)80;/m, `$1127.0.0.1:${listen};`)
  if (listened === upstream) throw new Error('deploy/nginx-fleet.conf: no `listen 80;` line')
  return listened
}

/**
 * A main nginx.conf around `include` (a file meant for the `http {}` block),
 * with its pid, logs and temporary files under `dir`, so that nginx runs as
 * any user without touching /var.
 */
export function mainConf(dir: string, include: string, opts: { workers?: number; errorLevel?: string; http?: string[] } = {}): string {
  return `${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes ${opts.workers ?? 1};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log${opts.errorLevel === undefined ? '' : ` ${opts.errorLevel}`};
events { worker_connections 1024; }
http {
${(opts.http ?? []).map((l) => `  ${l}\n`).join('')}  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${include};
}
`
}

const LOG_FORMAT = `'$msec $request_time $status "$request_method" "$uri" "$upstream_addr"'`

function parseAccess(line: string): Access | undefined {
  const m = /^(\d+\.\d+) (\d+\.\d+) (\d+) "([A-Z]+)" "([^"]*)" "([^"]*)"$/.exec(line)
  if (m === null) return undefined
  const end = Number(m[1]) * 1000
  return {
    start: end - Number(m[2]) * 1000,
    end,
    method: m[4] as string,
    path: m[5] as string,
    status: Number(m[3]),
    // "127.0.0.1:p1, 127.0.0.1:p2" (tried in turn); "-" when no upstream was asked.
    upstreams: [...(m[6] as string).matchAll(/:(\d+)/g)].map((x) => Number(x[1])),
  }
}

export async function startFleetNginx(t: Teardown, ports: number[]): Promise<FleetNginx> {
  const nginx = findNginx()
  if (nginx === undefined) throw new Error('nginx not found (PATH, /usr/sbin)')
  const dir = await mkdtemp(join(tmpdir(), 'notify-fleet-'))
  const listen = await freePort()
  await writeFile(join(dir, 'fleet.conf'), renderFleetConf(await readFile(CONF, 'utf8'), ports, listen))
  const conf = join(dir, 'nginx.conf')
  await writeFile(
    conf,
    mainConf(dir, join(dir, 'fleet.conf'), {
      workers: 2,
      errorLevel: 'notice',
      http: [`log_format fleet ${LOG_FORMAT};`, `access_log ${dir}/access.log fleet;`],
    }),
  )
  const args = ['-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log')]
  const test = spawnSync(nginx, [...args, '-t'], { encoding: 'utf8' })
  if (test.status !== 0) throw new Error(`nginx -t refuses deploy/nginx-fleet.conf: ${test.stderr}`)

  // Under a death guard, as the instances: a test killed by its timeout leaves no nginx behind.
  const guard = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0 ? ['setpriv', '--pdeathsig', 'KILL', nginx] : [nginx]
  const [cmd = nginx, ...pre] = guard
  const proc = spawn(cmd, [...pre, ...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d: Buffer) => (stderr += d))
  const exited = once(proc, 'exit')
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  })
  // Nothing announces the listen: poll the port.
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`nginx exited (${proc.exitCode}): ${stderr}`)
      return accepts(listen)
    },
    { timeoutMs: 10_000, what: `nginx listening on :${listen}`, intervalMs: 20 },
  )
  return {
    port: listen,
    accesses: async () =>
      (await readFile(join(dir, 'access.log'), 'utf8'))
        .split('\n')
        .map(parseAccess)
        .filter((a): a is Access => a !== undefined),
    complaints: async () => (await readFile(join(dir, 'error.log'), 'utf8')).split('\n').filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l)),
  }
}

