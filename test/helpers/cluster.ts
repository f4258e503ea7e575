// A real Redis Cluster for a test: 3 masters and 3 replicas from redis-server
// processes on free ports, formed by `redis-cli --cluster create`, with the
// faults a service must survive (manual and forced failover, a hung node, a
// slot moved or half-moved), all removed at teardown.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import calculateSlot from 'cluster-key-slot'
import { Cluster, type ClusterOptions, type Redis } from 'ioredis'
import { type MigrationContext, type SlotMigration, beginMigration } from './cluster-migration.js'
import { isFailed, isMaster, type NodeLine, owns, parseClusterNodes, topologyKey } from './cluster-nodes.js'
import { type RedisProcess, type Teardown, adminClient, allSettled, info, spawnOnFreePort, spawnRedis } from './redis-proc.js'
import { waitFor } from './wait.js'

export type { SlotMigration } from './cluster-migration.js'

export interface StartClusterOptions {
  /**
   * cluster-node-timeout: how long a node may be unreachable before it is
   * suspected (PFAIL), hence the floor of a forced failover's duration.
   * Default 1000 ms: a failover takes ~2-4 s. Redis' own default is 15000.
   */
  nodeTimeoutMs?: number
  /** Deadline of each wait (formation, failover, migration). Default 30000 ms. */
  timeoutMs?: number
  /** Extra redis-server arguments for every node. */
  args?: string[]
}

export interface ClusterNode {
  readonly port: number
  /** Current process id (changes on restartNode). */
  readonly pid: number
  readonly id: string
  /** As the cluster agreed when a helper last waited for it; 'dead' once killed. */
  readonly role: 'master' | 'replica' | 'dead'
  readonly paused: boolean
}

export interface TestCluster {
  nodes: readonly ClusterNode[]
  /** "127.0.0.1:p1,127.0.0.1:p2,..." as REDIS_CLUSTER_NODES takes it. */
  seeds: string
  seedList: Array<{ host: string; port: number }>
  /** An ioredis Cluster on the seeds, disconnected at teardown. */
  client(opts?: ClusterOptions): Cluster
  /** An admin connection to one node (commands bounded to 2 s). */
  node(port: number): Redis
  slotOf(key: string): number
  /** Port of the master serving a slot (or a key's slot) now. */
  masterOf(slotOrKey: number | string): Promise<number>
  /** Port of a replica of that master. */
  replicaOf(masterPort: number): Promise<number>
  /** CLUSTER FAILOVER on a replica; resolves when it is master and every node agrees. */
  manualFailover(replicaPort: number): Promise<void>
  /** SIGKILL a master; resolves with the port of its promoted replica once every live node says ok and agrees. */
  killMaster(port: number): Promise<number>
  /** Starts a killed node again (same node id); resolves once it is a synced replica. */
  restartNode(port: number): Promise<void>
  /** SIGSTOP: hung, connections kept open. After nodeTimeoutMs a paused master is failed over. */
  pause(port: number): void
  /** SIGCONT, then waits until the cluster agrees again (a failed-over master rejoins as replica). */
  resume(port: number): Promise<void>
  /** Waits until every live node agrees that `slot` is served by a master other than `oldMasterPort`; resolves with its port. */
  waitForFailover(oldMasterPort: number, slot: number): Promise<number>
  /** Waits until every live node says ok, agrees on the topology, and every replica is linked. */
  settled(): Promise<void>
  /** Moves a slot and its keys the way redis-cli --cluster reshard does; clients see MOVED after. */
  migrateSlot(slot: number, toPort: number): Promise<void>
  /** Starts a move and stops after `keys` keys (default 0): clients see ASK for moved keys. */
  beginMigration(slot: number, toPort: number, opts?: { keys?: number }): Promise<SlotMigration>
}

interface Member extends ClusterNode {
  proc: RedisProcess
  args: string[]
  admin: Redis
  id: string
  role: 'master' | 'replica' | 'dead'
  paused: boolean
}

export async function startCluster(t: Teardown, opts: StartClusterOptions = {}): Promise<TestCluster> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const dir = await mkdtemp(join(tmpdir(), 'notify-cluster-'))
  const members: Member[] = []
  const clients: Cluster[] = []
  // Registered before anything starts, so a failure half-way still cleans up.
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await Promise.all(members.map((m) => m.proc.kill()))
    await rm(dir, { recursive: true, force: true })
  })

  const used = new Set<number>()
  const argsFor = (port: number) => [
    '--port', `${port}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout', `${opts.nodeTimeoutMs ?? 1000}`,
    // A replica may fail over however stale it is: a test's replica is never "too old".
    '--cluster-replica-validity-factor', '0',
    // Replicas sync at once (7.0 waits 5 s for more replicas before a diskless sync).
    '--repl-diskless-sync-delay', '0',
    '--dir', dir, '--dbfilename', `dump-${port}.rdb`,
    ...(opts.args ?? []),
  ]
  await allSettled(
    Array.from({ length: 6 }, async () => {
      // The bus listens on port + 10000 (Redis 7 could take --cluster-port; redis-cli copes
      // with either): spawnOnFreePort checks that both are free.
      const proc = await spawnOnFreePort(argsFor, { avoid: used, bus: true })
      const m: Member = {
        proc, args: argsFor(proc.port), admin: adminClient(t, proc.port), id: '', role: 'master', paused: false,
        get port() {
          return this.proc.port
        },
        get pid() {
          return this.proc.pid
        },
      }
      members.push(m)
    }),
  )
  const seedList = members.map((m) => ({ host: '127.0.0.1', port: m.port }))
  const seeds = seedList.map((s) => `${s.host}:${s.port}`).join(',')

  const member = (port: number) => {
    const m = members.find((x) => x.port === port)
    if (m === undefined) throw new Error(`no cluster node on port ${port}`)
    return m
  }
  const live = () => members.filter((m) => m.proc.alive && !m.paused)
  const view = async () => parseClusterNodes(String(await live()[0]?.admin.cluster('NODES')))

  /** Polls every live node until all say ok, agree, have linked replicas, and `extra` holds. */
  const settle = (what: string, extra: (lines: NodeLine[]) => boolean = () => true) =>
    waitFor(
      async (reason) => {
        const views = await Promise.all(
          live().map(async (m) => {
            const [ci, cn, repl] = await Promise.all([m.admin.cluster('INFO'), m.admin.cluster('NODES'), info(m.admin, 'replication')])
            return { m, ok: String(ci).includes('cluster_state:ok'), lines: parseClusterNodes(String(cn)), repl }
          }),
        )
        const keys = new Set(views.map((v) => topologyKey(v.lines)))
        const notOk = views.filter((v) => !v.ok).map((v) => v.m.port)
        const unlinked = views.filter((v) => v.repl.get('role') === 'slave' && v.repl.get('master_link_status') !== 'up').map((v) => v.m.port)
        const lines = views[0]?.lines ?? []
        reason(`not ok: [${notOk}], replicas not linked: [${unlinked}], views: ${[...keys].join(' | ')}`)
        if (notOk.length > 0 || unlinked.length > 0 || keys.size !== 1 || lines.length !== members.length || !extra(lines)) return false
        for (const l of lines) {
          const m = member(l.port)
          m.id = l.id
          m.role = m.proc.alive ? (isMaster(l) ? 'master' : 'replica') : 'dead'
        }
        return true
      },
      { timeoutMs, what, intervalMs: 100 },
    ).then(() => undefined)

  // redis-cli assigns slots and replicas, meets the nodes and waits until they agree.
  const cli = spawn('redis-cli', ['--cluster', 'create', ...seeds.split(','), '--cluster-replicas', '1', '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let cliOut = ''
  cli.stdout.on('data', (d: Buffer) => (cliOut += d.toString()))
  cli.stderr.on('data', (d: Buffer) => (cliOut += d.toString()))
  const cliTimer = setTimeout(() => cli.kill('SIGKILL'), timeoutMs)
  const [code] = (await once(cli, 'exit')) as [number | null]
  clearTimeout(cliTimer)
  if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}):\n${cliOut}`)
  await settle('a formed cluster (3 masters, 3 linked replicas, every node ok and agreeing)', (lines) => lines.filter((l) => isMaster(l)).length === 3)

  const slotOf = (key: string) => calculateSlot(key)
  const masterOf = async (slotOrKey: number | string) => {
    const slot = typeof slotOrKey === 'number' ? slotOrKey : slotOf(slotOrKey)
    const owner = (await view()).find((l) => isMaster(l) && !isFailed(l) && owns(l, slot))
    if (owner === undefined) throw new Error(`no live master serves slot ${slot}`)
    return owner.port
  }
  const replicaOf = async (masterPort: number) => {
    const lines = await view()
    const id = lines.find((l) => l.port === masterPort)?.id
    const replica = lines.find((l) => l.masterId === id && !isMaster(l) && !isFailed(l))
    if (replica === undefined) throw new Error(`no live replica of ${masterPort}`)
    return replica.port
  }
  const ownerIs = (slot: number, port: number) => (lines: NodeLine[]) => lines.some((l) => l.port === port && isMaster(l) && owns(l, slot))
  const firstSlot = (port: number, lines: NodeLine[]) => {
    const s = lines.find((l) => l.port === port)?.ranges[0]?.[0]
    if (s === undefined) throw new Error(`node ${port} serves no slot`)
    return s
  }
  const waitForFailover = async (oldMaster: number, slot: number) => {
    await settle(`slot ${slot} taken over from ${oldMaster}`, (lines) => lines.some((l) => isMaster(l) && owns(l, slot) && l.port !== oldMaster))
    return masterOf(slot)
  }

  const migration: MigrationContext = {
    admin: (port) => member(port).admin,
    idOf: (port) => member(port).id,
    otherMasters: (from, to) => live().filter((m) => m.role === 'master' && m.port !== from && m.port !== to).map((m) => m.port),
    agreed: (slot, from, to) => settle(`slot ${slot} moved from ${from} to ${to}`, ownerIs(slot, to)),
  }
  const begin = async (slot: number, to: number, o: { keys?: number } = {}) => beginMigration(migration, slot, await masterOf(slot), to, o.keys)

  return {
    nodes: members,
    seeds,
    seedList,
    client: (o) => {
      const c = new Cluster(seedList, o)
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    node: (port) => member(port).admin,
    slotOf,
    masterOf,
    replicaOf,
    manualFailover: async (replicaPort) => {
      const m = member(replicaPort)
      await m.admin.cluster('FAILOVER')
      await settle(`${replicaPort} promoted by CLUSTER FAILOVER`, (lines) => lines.some((l) => l.port === replicaPort && isMaster(l) && l.ranges.length > 0))
    },
    killMaster: async (port) => {
      const m = member(port)
      const slot = firstSlot(port, await view())
      await m.proc.kill()
      m.role = 'dead'
      return waitForFailover(port, slot)
    },
    restartNode: async (port) => {
      const m = member(port)
      if (m.proc.alive) throw new Error(`node ${port} is running`)
      // Same config file: it comes back with its node id, learns that its slots
      // went to a newer epoch, and turns into a replica of their new owner.
      m.proc = await spawnRedis(port, m.args)
      await settle(`${port} back as a replica`, (lines) => lines.some((l) => l.port === port && !isMaster(l) && !isFailed(l)))
    },
    pause: (port) => {
      const m = member(port)
      m.paused = true
      m.proc.pause()
    },
    resume: async (port) => {
      const m = member(port)
      m.proc.resume()
      m.paused = false
      await settle(`the cluster agreeing again after ${port} resumed`)
    },
    waitForFailover,
    settled: () => settle('a settled cluster'),
    migrateSlot: async (slot, to) => (await begin(slot, to)).finish(),
    beginMigration: begin,
  }
}
