// A real Redis Sentinel setup for a test: one master, one replica, three
// sentinels (quorum 2), from redis-server processes on free ports, with a
// forced failover and a hung process on demand; all removed at teardown.
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis, type RedisOptions } from 'ioredis'
import { type RedisProcess, SENTINEL_READY, type Teardown, adminClient, allSettled, spawnOnFreePort, spawnRedis } from './redis-proc.js'
import { waitFor } from './wait.js'

export interface StartSentinelOptions {
  /** Master name. Default 'notify'. */
  name?: string
  /** requirepass and masterauth on both servers, `sentinel auth-pass` on the sentinels. */
  password?: string
  /** requirepass on the sentinels (they also use it to talk to each other). */
  sentinelPassword?: string
  /** down-after-milliseconds: silence before a sentinel calls the master down. Default 1000. */
  downAfterMs?: number
  /**
   * failover-timeout. Also how long a sentinel waits before retrying a failover
   * that did not happen (twice this, e.g. after a split vote). Default 3000.
   */
  failoverTimeoutMs?: number
  /** Deadline of each wait. Default 30000 ms. */
  timeoutMs?: number
}

export interface TestSentinel {
  name: string
  /** As ioredis takes them. */
  sentinels: Array<{ host: string; port: number }>
  /** "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" as REDIS_SENTINELS takes it. */
  seeds: string
  /** Ports of the two data servers (the first started as master). */
  servers: number[]
  /** The current master's port, as a sentinel reports it. */
  master(): Promise<number>
  /** An ioredis client through the sentinels (password options filled in), disconnected at teardown. */
  client(opts?: RedisOptions): Redis
  /** An admin connection to any process of the setup (commands bounded to 2 s). */
  node(port: number): Redis
  /** SIGKILL the master; resolves with the new master's port once every sentinel reports it and it answers ROLE as master. */
  killMaster(): Promise<number>
  /**
   * Starts the killed server again on its port. By default as a replica of the
   * current master (resolves when synced and known to the sentinels). With
   * `asMaster`, it comes back believing it is still master, as after a reboot,
   * and resolves once the sentinels have turned it into a replica: they wait
   * ~8 s plus an INFO period (up to 10 s) before doing so.
   */
  restartOld(opts?: { asMaster?: boolean }): Promise<void>
  /** SIGSTOP any process of the setup (server or sentinel): hung, sockets open. */
  pause(port: number): void
  /** SIGCONT. */
  resume(port: number): void
}

const SYNCED = 'MASTER <-> REPLICA sync: Finished with success'

export async function startSentinel(t: Teardown, opts: StartSentinelOptions = {}): Promise<TestSentinel> {
  const name = opts.name ?? 'notify'
  const timeoutMs = opts.timeoutMs ?? 30_000
  const dir = await mkdtemp(join(tmpdir(), 'notify-sentinel-'))
  const procs = new Map<number, RedisProcess>()
  const admins = new Map<number, Redis>()
  const clients: Redis[] = []
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await Promise.all([...procs.values()].map((p) => p.kill()))
    await rm(dir, { recursive: true, force: true })
  })
  const used = new Set<number>()
  const track = (p: RedisProcess, password?: string) => {
    procs.set(p.port, p)
    if (!admins.has(p.port)) admins.set(p.port, adminClient(t, p.port, password))
    return p
  }

  const pw = opts.password
  const auth = pw === undefined ? [] : ['--requirepass', pw, '--masterauth', pw]
  const serverArgs = (port: number, replicaOf?: number) => [
    '--port', `${port}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--dbfilename', `dump-${port}.rdb`,
    // 7.0 waits 5 s for more replicas before a diskless sync; a test has one.
    '--repl-diskless-sync-delay', '0',
    ...auth,
    ...(replicaOf === undefined ? [] : ['--replicaof', '127.0.0.1', `${replicaOf}`]),
  ]
  const first = track(await spawnOnFreePort((p) => serverArgs(p), { avoid: used }), pw)
  // The replica must be attached before the sentinels start: they learn replicas
  // from the master's INFO, asked at once, then only every 10 s.
  const second = track(await spawnOnFreePort((p) => serverArgs(p, first.port), { avoid: used, ready: SYNCED }), pw)

  const sentinelArgs = (port: number) => {
    const file = join(dir, `sentinel-${port}.conf`)
    // Sentinels rewrite their config file (ids, epochs, discovered peers): one writable file each.
    writeFileSync(file, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${first.port} 2`,
      `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 3000}`,
      `sentinel parallel-syncs ${name} 1`,
      ...(pw === undefined ? [] : [`sentinel auth-pass ${name} ${pw}`]),
      ...(opts.sentinelPassword === undefined ? [] : [`requirepass ${opts.sentinelPassword}`]),
      '',
    ].join('\n'))
    return [file, '--sentinel']
  }
  const sentinelProcs = await allSettled(
    [0, 1, 2].map(async () => track(await spawnOnFreePort(sentinelArgs, { avoid: used, ready: SENTINEL_READY }), opts.sentinelPassword)),
  )
  const sentinels = sentinelProcs.map((p) => ({ host: '127.0.0.1', port: p.port }))
  const admin = (port: number) => {
    const a = admins.get(port)
    if (a === undefined) throw new Error(`no process of the sentinel setup on port ${port}`)
    return a
  }
  const paused = new Set<number>()
  const running = (ps: RedisProcess[]) => ps.filter((p) => p.alive && !paused.has(p.port))
  const ask = async (p: RedisProcess) => Number(((await admin(p.port).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as string[])[1])

  // Each sentinel knows the replica and both other sentinels (hello messages, every 2 s).
  await waitFor(
    async (reason) => {
      const states = await Promise.all(
        sentinelProcs.map(async (p) => {
          const a = admin(p.port)
          const replicas = await sentinelList(a, 'REPLICAS', name)
          const peers = await sentinelList(a, 'SENTINELS', name)
          const flags = replicas.map((r) => r.get('flags'))
          return `${p.port}: replicas [${flags}], ${peers.length} peers`
        }),
      )
      reason(states.join('; '))
      return states.every((s) => s.endsWith('replicas [slave], 2 peers'))
    },
    { timeoutMs, what: 'three sentinels knowing the replica and each other', intervalMs: 100 },
  )

  let killed: RedisProcess | undefined
  const master = async () => ask(running(sentinelProcs)[0] ?? sentinelProcs[0]!)
  const knownReplica = (port: number) =>
    waitFor(
      async (reason) => {
        for (const p of running(sentinelProcs)) {
          const r = (await sentinelList(admin(p.port), 'REPLICAS', name)).find((x) => x.get('port') === `${port}`)
          reason(`sentinel ${p.port} sees ${r === undefined ? 'nothing' : JSON.stringify(Object.fromEntries(r))}`)
          if (r?.get('flags') !== 'slave' || r.get('role-reported') !== 'slave' || r.get('master-link-status') !== 'ok') return false
        }
        return true
      },
      { timeoutMs, what: `sentinels seeing ${port} as a linked replica`, intervalMs: 100 },
    )

  return {
    name,
    sentinels,
    seeds: sentinels.map((s) => `${s.host}:${s.port}`).join(','),
    servers: [first.port, second.port],
    master,
    client: (o) => {
      const c = new Redis({ sentinels, name, password: pw, sentinelPassword: opts.sentinelPassword, ...o })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    node: admin,
    killMaster: async () => {
      const old = await master()
      killed = procs.get(old)
      await killed?.kill()
      return waitFor(
        async (reason) => {
          const seen = await Promise.all(running(sentinelProcs).map(ask))
          reason(`sentinels report ${seen}`)
          const next = seen[0]
          if (next === undefined || next === old || seen.some((p) => p !== next)) return false
          const role = (await admin(next).call('ROLE')) as unknown[]
          return role[0] === 'master' && next
        },
        { timeoutMs, what: `a new master after killing ${old}`, intervalMs: 100 },
      )
    },
    restartOld: async (o = {}) => {
      if (killed === undefined || killed.alive) throw new Error('restartOld: no master was killed')
      const port = killed.port
      killed = o.asMaster
        ? await spawnRedis(port, serverArgs(port))
        : await spawnRedis(port, serverArgs(port, await master()), SYNCED)
      track(killed, pw)
      await knownReplica(port)
    },
    pause: (port) => {
      paused.add(port)
      procs.get(port)?.pause()
    },
    resume: (port) => {
      procs.get(port)?.resume()
      paused.delete(port)
    },
  }
}

/** SENTINEL REPLICAS|SENTINELS <name>: one flat [field, value, ...] array per instance, as maps. */
async function sentinelList(c: Redis, what: 'REPLICAS' | 'SENTINELS', name: string): Promise<Array<Map<string, string>>> {
  const rows = (await c.call('SENTINEL', what, name)) as string[][]
  return rows.map((r) => new Map(r.flatMap((v, i) => (i % 2 === 0 ? [[v, r[i + 1] ?? '']] : [])) as Array<[string, string]>))
}
