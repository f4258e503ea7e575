// Reconnect storm: N streams drop at once and reconnect with Last-Event-ID,
// each having missed M events. Measures the time until every stream has
// caught up (and until every stream has its response head), checks every
// stream got exactly the events it missed, in order, once, and records the
// service's RSS before and at its peak during the storm.
//
// Usage: npm run bench:storm -- [streams=10000] [runs=3] [--target=ours|nchan|all]
//          [--embedded] [--missed=10] [--workers=2] [--timeout-s=120] [--auth-cache] [--in-flight=N]
//   --target       ours (the service, the default), nchan (nginx with libnginx-mod-nchan,
//                  bench/nchan/), or all (ours, then Nchan, each for `runs` runs). Nchan
//                  gets the same streams, missed events (POST /pub/<user>, its own ids)
//                  and reconnects with Last-Event-ID, and replays from its own buffer
//                  if it does (`replayed` says how many of the missed events came);
//                  allHeadersMs is the time until every stream is open again.
//   --embedded     REDIS_URL unset (in-memory broker), events sent by POST /publish;
//                  default: the Redis broker, events sent with createPublisher. Ours only.
//   --auth-cache   keep the default AUTH_CACHE_TTL_MS (30 s); default 0, so every
//                  (re)connect costs one auth upstream call (as Nchan's always does).
//   --in-flight=N  reconnect at most N streams at a time per worker (default: all
//                  at once), to tell the kernel's accept queue from the service.
//   --backlog=N    the service's LISTEN_BACKLOG (default: the service's, 4096), and
//                  Nchan's listen backlog (default 4096 too); above
//                  net.core.somaxconn the kernel caps it.
//   --service=DIR  the build under test: DIR/dist/server.js, and DIR/dist/publisher.js
//                  publishes (e.g. a worktree of an older commit; default this repository).
//   --ssubscribe-log  a diagnostic run: Redis logs every command of the storm
//                  (SLOWLOG with a 0 µs threshold), and the run reports how many
//                  channels each SSUBSCRIBE carried. Costs Redis some CPU: not for timed runs.
// Every run also reports the Redis commands of each phase (INFO commandstats:
// SSUBSCRIBE, SUNSUBSCRIBE, XRANGE, XREVRANGE, EVALSHA ...).
// Prints one JSON line per run, then one summary line per target (medians and ranges).
// STORM_SERVICE_NODE_OPTIONS, when set, is passed to the service as NODE_OPTIONS
// (e.g. "--require /path/to/profiler-preload.cjs"; --cpu-prof is not allowed there).
//
// The streams live in worker child processes (raw node:net sockets and a
// minimal chunked + SSE line reader, no SSE library), so no process holds more
// than N / workers client sockets. All addresses are loopback.
import type { ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ask, startWorker, type Worker } from './load/ipc.js'
import { cpuOf } from './load/proc.js'
import { type SseEvent, type SseHooks, SseReader } from './load/sse-reader.js'
import { dist, median } from './load/stats.js'
import type { Publish, StormServer } from './storm-server.js'

// Client sockets are not bound to a source address (localAddress): on this
// kernel, bind() with port 0 slows down to milliseconds per call once tens of
// thousands of TIME_WAIT sockets sit on that address (each drop leaves 10,000),
// and Node makes that call on the event loop: 5,000 connects took 14 s. Without
// it, connect() picks the port and may reuse TIME_WAIT ones on loopback.
const HISTORY_SIZE = 100
/** Events per publish batch (PUBLISH_MAX_EVENTS / createPublisher default) and batches in flight. */
const PUBLISH_BATCH = 1000
const PUBLISH_IN_FLIGHT = 4
/** Streams being opened at a time per worker in the (untimed) initial connect. */
const OPEN_IN_FLIGHT = 250
/** After the last stream caught up: how long to keep listening for late duplicates. */
const GRACE_MS = 1000

// ---------------------------------------------------------------------------
// Worker side: holds a share of the streams.

type Ev = SseEvent

/** One stream of the storm: the reader plus what the storm records about it. */
class Conn extends SseReader<Conn> {
  socket: Socket | undefined
  tcpAt = NaN
  headersAt = NaN
  errorAt = NaN
  doneAt = NaN
  connected = false
  ended = false
  /** Counted as finished (caught up, refused or closed) in the storm. */
  settled = false
  error: string | undefined
  events: Ev[] = []
  /** Called when the head, the `: connected` comment or the close arrives. */
  wake: (() => void) | undefined
  /** Storm: called once the stream has caught up, been refused or closed. */
  onSettled: (() => void) | undefined

  constructor(
    readonly user: string,
    hooks: SseHooks<Conn>,
  ) {
    super(hooks)
  }
}

type ToWorker =
  | { cmd: 'open'; port: number; users: string[]; openComment: string; timeoutMs: number }
  | { cmd: 'prime'; ids: string[]; timeoutMs: number }
  | { cmd: 'drop' }
  | { cmd: 'expect'; ids: string[][] }
  | { cmd: 'storm'; port: number; t0: string; timeoutMs: number; inFlight: number }
  | { cmd: 'close' }

interface StormReport {
  type: 'stormed'
  streams: number
  /** When this worker began issuing connects and when the last connect() had been made, ms after t0. */
  dialStartMs: number
  dialEndMs: number
  /** Longest stall of this worker's event loop during the storm. */
  loopDelayMaxMs: number
  tcpMs: number[]
  /** Per stream answered 200: when its head arrived, ms after t0. */
  headersMs: number[]
  doneMs: number[]
  problems: Problems
}

interface Problems {
  /** Streams that never had a 200 head, by status (0 = no head at all). */
  badStatus: Record<string, number>
  /** Socket errors by code. */
  errors: Record<string, number>
  /** Streams the server ended or reset before they had caught up. */
  closedEarly: number
  /** Streams still short of their missed events at the deadline. */
  stuck: number
  resyncs: number
  lossStreams: number
  lostEvents: number
  dupStreams: number
  dupEvents: number
  extraEvents: number
  outOfOrder: number
  badPayload: number
  samples: unknown[]
}

function worker(): void {
  const send = (m: unknown) => process.send?.(m)
  let users: string[] = []
  let conns: Conn[] = []
  let firstIds: string[] = []
  let expected: string[][] = []
  process.on('disconnect', () => process.exit(0))

  const dial = (port: number, headers: string, c: Conn, started: bigint): Socket => {
    const socket = connect({ port, host: '127.0.0.1' })
    c.socket = socket
    socket.setEncoding('latin1')
    socket.setNoDelay(true)
    socket.once('connect', () => {
      c.tcpAt = Number(process.hrtime.bigint() - started) / 1e6
      socket.write(`GET /notify HTTP/1.1\r\nHost: storm\r\nAccept: text/event-stream\r\nAuthorization: Bearer user-${c.user}\r\n${headers}\r\n`)
    })
    socket.on('data', (d: string) => c.feed(d))
    socket.on('error', (err: Error & { code?: string }) => {
      c.error ??= err.code ?? err.message
      if (Number.isNaN(c.errorAt)) c.errorAt = Number(process.hrtime.bigint() - started) / 1e6
    })
    socket.once('close', () => {
      c.ended = true
      c.wake?.()
    })
    return socket
  }

  const open = async (port: number, openComment: string, timeoutMs: number) => {
    conns = users.map(
      (u) =>
        new Conn(u, {
          head: (c) => c.status !== 200 && c.wake?.(),
          comment: (c, text) => {
            if (text !== openComment) return
            c.connected = true
            c.wake?.()
          },
          event: (c, e) => c.events.push(e),
        }),
    )
    const started = process.hrtime.bigint()
    let next = 0
    const failures: string[] = []
    const one = async (): Promise<void> => {
      for (let k = next++; k < conns.length; k = next++) {
        const c = conns[k] as Conn
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs)
          c.wake = () => {
            clearTimeout(timer)
            resolve()
          }
          dial(port, '', c, started)
        })
        c.wake = undefined
        if (!c.connected) failures.push(`user ${c.user}: status ${c.status} error ${c.error ?? '-'} ${c.body.slice(0, 100)}`)
      }
    }
    await Promise.all(Array.from({ length: OPEN_IN_FLIGHT }, one))
    send({ type: 'opened', ok: conns.length - failures.length, failures: failures.slice(0, 5), failed: failures.length })
  }

  const prime = async (ids: string[], timeoutMs: number) => {
    firstIds = ids
    const deadline = Date.now() + timeoutMs
    await until(() => conns.every((c) => c.events.length >= 1) || Date.now() > deadline, 50)
    let missing = 0
    let mismatched = 0
    const samples: unknown[] = []
    conns.forEach((c, k) => {
      const got = c.events[0]
      if (got === undefined) missing++
      else if (got.id !== ids[k] || c.events.length !== 1) {
        mismatched++
        if (samples.length < 5) samples.push({ user: c.user, expected: ids[k], got: c.events })
      }
    })
    send({ type: 'primed', missing, mismatched, samples })
  }

  const drop = async () => {
    const closed = conns.map((c) => (c.ended ? Promise.resolve() : new Promise<void>((r) => c.socket?.once('close', () => r()))))
    for (const c of conns) c.socket?.destroy()
    await Promise.all(closed)
    send({ type: 'dropped' })
  }

  const storm = async (port: number, t0: bigint, timeoutMs: number, inFlight: number) => {
    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    const total = users.length
    let finished = 0
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6
    const settle = (c: Conn) => {
      if (c.settled) return
      c.settled = true
      finished++
      c.onSettled?.()
    }
    conns = users.map((u, k) => {
      const want = (expected[k] ?? []).length
      const c = new Conn(u, {
        head: (cc) => {
          cc.headersAt = ms()
          if (cc.status !== 200) settle(cc)
        },
        event: (cc, e) => {
          cc.events.push(e)
          if (cc.events.length === want && Number.isNaN(cc.doneAt)) {
            cc.doneAt = ms()
            settle(cc)
          }
        },
      })
      return c
    })
    const deadline = Date.now() + timeoutMs
    let dialEndMs = NaN
    const reconnect = (c: Conn, k: number) => {
      c.wake = () => c.ended && settle(c)
      dial(port, `Last-Event-ID: ${firstIds[k]}\r\n`, c, t0)
    }
    const dialStartMs = ms()
    if (inFlight <= 0) {
      // All at once: every connect is issued in this one turn of the event loop
      // (Node makes the connect() calls on the next tick; the next turn comes after them).
      conns.forEach(reconnect)
      setImmediate(() => (dialEndMs = ms()))
    } else {
      let next = 0
      const lane = async () => {
        for (let k = next++; k < conns.length && Date.now() < deadline; k = next++) {
          const c = conns[k] as Conn
          await new Promise<void>((resolve) => {
            c.onSettled = resolve
            reconnect(c, k)
          })
        }
      }
      void Promise.all(Array.from({ length: inFlight }, lane)).then(() => (dialEndMs = ms()))
    }
    await until(() => finished >= total || Date.now() > deadline, 20)
    // Keep listening a little: a duplicate or an extra event would arrive now.
    await new Promise((r) => setTimeout(r, GRACE_MS))
    loop.disable()
    const report: StormReport = {
      type: 'stormed',
      streams: total,
      dialStartMs,
      dialEndMs,
      loopDelayMaxMs: loop.max / 1e6,
      tcpMs: conns.map((c) => c.tcpAt).filter((x) => !Number.isNaN(x)),
      // Heads of accepted streams only: a 503 answer is not a stream.
      headersMs: conns.filter((c) => c.status === 200).map((c) => c.headersAt),
      doneMs: conns.map((c) => c.doneAt).filter((x) => !Number.isNaN(x)),
      problems: check(conns, expected),
    }
    send(report)
  }

  process.on('message', (m: ToWorker) => {
    const run = async () => {
      switch (m.cmd) {
        case 'open':
          users = m.users
          return open(m.port, m.openComment, m.timeoutMs)
        case 'prime':
          return prime(m.ids, m.timeoutMs)
        case 'drop':
          return drop()
        case 'expect':
          expected = m.ids
          return send({ type: 'expected' })
        case 'storm':
          return storm(m.port, BigInt(m.t0), m.timeoutMs, m.inFlight)
        case 'close':
          for (const c of conns) c.socket?.destroy()
          conns = []
          return send({ type: 'closed' })
      }
    }
    run().catch((err: unknown) => send({ type: 'error', message: String((err as Error)?.stack ?? err) }))
  })
  send({ type: 'ready' })
}

/** Per stream: exactly the expected ids, in order, once each, nothing else. */
function check(conns: Conn[], expected: string[][]): Problems {
  const p: Problems = {
    badStatus: {}, errors: {}, closedEarly: 0, stuck: 0, resyncs: 0, lossStreams: 0, lostEvents: 0,
    dupStreams: 0, dupEvents: 0, extraEvents: 0, outOfOrder: 0, badPayload: 0, samples: [],
  }
  const bump = (r: Record<string, number>, k: string) => (r[k] = (r[k] ?? 0) + 1)
  const sampled: Record<string, number> = {}
  conns.forEach((c, k) => {
    const want = expected[k] ?? []
    const ids = c.events.map((e) => e.id ?? '(no id)')
    const got = new Set(ids)
    const wanted = new Set(want)
    const issues: string[] = []
    const note = (issue: string) => issues.push(issue)
    if (c.status !== 200) {
      bump(p.badStatus, String(c.status))
      note(`status ${c.status}`)
    }
    if (c.error !== undefined) {
      bump(p.errors, c.error)
      note(`socket error ${c.error}`)
    }
    if (c.status === 200 && Number.isNaN(c.doneAt)) {
      if (c.ended) p.closedEarly++
      else p.stuck++
      note(c.ended ? 'closed before caught up' : 'stuck')
    }
    const resyncs = c.events.filter((e) => e.type === 'resync').length
    if (resyncs > 0) {
      p.resyncs += resyncs
      note('resync')
    }
    const lost = want.filter((id) => !got.has(id)).length
    if (lost > 0 && c.status === 200) {
      p.lossStreams++
      p.lostEvents += lost
      note(`lost ${lost}`)
    }
    if (got.size < ids.length) {
      p.dupStreams++
      p.dupEvents += ids.length - got.size
      note('duplicates')
    }
    const extra = c.events.filter((e) => e.type !== 'resync' && !wanted.has(e.id ?? '')).length
    if (extra > 0) {
      p.extraEvents += extra
      note(`extra ${extra}`)
    }
    if (lost === 0 && extra === 0 && got.size === ids.length && ids.some((id, i) => id !== want[i])) {
      p.outOfOrder++
      note('order')
    }
    // The i-th missed event carries n = i + 1 (n = 0 was the priming event).
    if (c.events.some((e, i) => e.type === 'storm' && Number(/"n":(\d+)/.exec(e.data)?.[1]) !== i + 1)) {
      p.badPayload++
      note('payload')
    }
    // Up to two examples of each kind of problem.
    const kind = issues.map((i) => i.replace(/ \d+$/, '')).join(', ')
    if (issues.length > 0 && (sampled[kind] = (sampled[kind] ?? 0) + 1) <= 2) {
      const at = (x: number) => (Number.isNaN(x) ? null : Math.round(x))
      p.samples.push({
        user: c.user, issues, status: c.status, body: c.body.slice(0, 200),
        tcpConnectedAtMs: at(c.tcpAt), headersAtMs: at(c.headersAt), errorAtMs: at(c.errorAt), expected: want, received: c.events,
      })
    }
  })
  return p
}

function until(ready: () => boolean, everyMs = 10): Promise<void> {
  return new Promise((resolve) => {
    if (ready()) return resolve()
    const timer = setInterval(() => {
      if (!ready()) return
      clearInterval(timer)
      resolve()
    }, everyMs)
  })
}

// ---------------------------------------------------------------------------
// Parent side: redis-server, auth upstream, the service, the publisher, the clock.

type Target = 'ours' | 'nchan'

interface Options {
  /** --target=ours|nchan|all: the service, Nchan, or both in turn. */
  targets: Target[]
  streams: number
  runs: number
  embedded: boolean
  missed: number
  workers: number
  timeoutMs: number
  authCache: boolean
  /** Reconnects in flight per worker; 0 = all at once. */
  inFlight: number
  /** LISTEN_BACKLOG for the service; undefined = its default. */
  backlog: string | undefined
  /** The build under test (DIR/dist/server.js, DIR/dist/publisher.js). */
  service: string | undefined
  /** Log every Redis command of the storm and report SSUBSCRIBE batch sizes. */
  ssubscribeLog: boolean
}

function parseArgs(argv: string[]): Options {
  const positional = argv.filter((a) => !a.startsWith('--'))
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const target = flag('target') ?? 'ours'
  if (target === 'baseline' || target === 'both') throw new Error('the baseline keeps no history to reconnect to: --target=ours|nchan|all')
  if (!['ours', 'nchan', 'all'].includes(target)) throw new Error(`--target=ours|nchan|all (got ${target})`)
  const o: Options = {
    targets: target === 'all' ? ['ours', 'nchan'] : [target as Target],
    streams: Number(positional[0] ?? 10_000),
    runs: Number(positional[1] ?? 3),
    embedded: argv.includes('--embedded'),
    missed: Number(flag('missed') ?? 10),
    workers: Number(flag('workers') ?? 2),
    timeoutMs: Number(flag('timeout-s') ?? 120) * 1000,
    authCache: argv.includes('--auth-cache'),
    inFlight: Number(flag('in-flight') ?? 0),
    backlog: flag('backlog'),
    service: flag('service'),
    ssubscribeLog: argv.includes('--ssubscribe-log'),
  }
  if (!(o.streams > 0 && o.runs > 0 && o.missed > 0 && o.workers > 0 && o.timeoutMs > 0)) throw new Error(`bad arguments: ${argv.join(' ')}`)
  // The soft limit is 20,000 open files per process and cannot be raised from node.
  if (Math.ceil(o.streams / o.workers) > 19_000) throw new Error('more than 19,000 streams per worker: add --workers')
  if (o.missed + 1 > HISTORY_SIZE) throw new Error(`--missed must be below HISTORY_SIZE (${HISTORY_SIZE})`)
  return o
}

/** System-wide TCP counters (TcpExt in /proc/net/netstat) that show a full accept queue and SYN retries. */
const TCP_COUNTERS = ['ListenOverflows', 'ListenDrops', 'SyncookiesSent', 'TCPReqQFullDrop', 'TCPSynRetrans', 'TCPTimeouts'] as const
function tcpCounters(): Record<string, number> {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = lines[0]?.split(/\s+/) ?? []
  const values = lines[1]?.split(/\s+/) ?? []
  const out: Record<string, number> = {}
  for (const k of TCP_COUNTERS) out[k] = Number(values[names.indexOf(k)] ?? NaN)
  return out
}

const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length

/** Connections the service still has on its port (ESTABLISHED or CLOSE_WAIT), from /proc/net/tcp. */
function serviceConnections(port: number): number {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  let n = 0
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(hexPort) && (f[3] === '01' || f[3] === '08')) n++
  }
  return n
}
/** What the bench itself may keep open to the service: the readiness probe's and POST /publish's keep-alive connections. */
const OWN_CONNECTIONS = 2 * PUBLISH_IN_FLIGHT
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1)
const sinceMs = (t: bigint) => Math.round(Number(process.hrtime.bigint() - t) / 1e6)

async function waitFor(what: string, ready: () => boolean, timeoutMs: number, everyMs = 100): Promise<number> {
  const start = Date.now()
  while (!ready()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
  return Date.now() - start
}

/** Waits until the service has used under 10 % of a core for half a second. */
async function waitQuiet(pid: number, timeoutMs = 60_000): Promise<void> {
  const start = Date.now()
  let last = cpuOf(pid)
  while (Date.now() - start < timeoutMs) {
    await sleep(500)
    const now = cpuOf(pid)
    if (now - last < 0.05) return
    last = now
  }
}

/** Publishes in rounds (round r: one event per user), PUBLISH_BATCH per call, PUBLISH_IN_FLIGHT calls at a time. */
async function publishRounds(publish: Publish, users: string[], first: number, rounds: number): Promise<Map<string, string[]>> {
  const ids = new Map<string, string[]>(users.map((u) => [u, []]))
  for (let n = first; n < first + rounds; n++) {
    const batches: string[][] = []
    for (let i = 0; i < users.length; i += PUBLISH_BATCH) batches.push(users.slice(i, i + PUBLISH_BATCH))
    let next = 0
    const lane = async () => {
      for (let b = next++; b < batches.length; b = next++) {
        const batch = batches[b] as string[]
        const got = await publish(batch.map((u) => ({ recipient_id: u, type: 'storm', n })))
        batch.forEach((u, k) => ids.get(u)?.push(got[k] as string))
      }
    }
    // Rounds one after the other: a user's events are published in order.
    await Promise.all(Array.from({ length: PUBLISH_IN_FLIGHT }, lane))
  }
  return ids
}

async function runOnce(o: Options, target: Target, run: number, deps: Deps): Promise<Record<string, unknown>> {
  const { workers } = deps
  const users = Array.from({ length: o.streams }, (_, i) => `storm-${run}-${i}`)
  const share = (w: number) => users.filter((_, i) => i % workers.length === w)
  const server = await deps.startServer(target)
  const { port, publish } = server
  const pid = server.pid()
  // The service's Redis broker (Nchan and the embedded broker have none to count).
  const onRedis = target === 'ours' && !o.embedded
  const commands = onRedis ? deps.redisCommands : async () => new Map() as CommandStats

  try {
    const fdIdle = fdsOf(pid)
    const rssIdle = server.rss()

    // 1. Open every stream (no Last-Event-ID), a bounded number at a time: not timed.
    const commandsIdle = await commands()
    let t = process.hrtime.bigint()
    const opened = await Promise.all(
      workers.map((w, k) => ask<{ ok: number; failed: number; failures: string[] }>(w, { cmd: 'open', port, users: share(k), openComment: server.openComment, timeoutMs: 300_000 }, 'opened', 310_000)),
    )
    const openFailed = opened.reduce((a, r) => a + r.failed, 0)
    if (openFailed > 0) throw new Error(`${openFailed} streams failed to open: ${JSON.stringify(opened.flatMap((r) => r.failures))}`)
    const connectMs = sinceMs(t)

    // 2. One event per user, so every stream has a Last-Event-ID.
    const firstIds = await publishRounds(publish, users, 0, 1)
    const primed = await Promise.all(
      workers.map((w, k) =>
        ask<{ missing: number; mismatched: number; samples: unknown[] }>(w, { cmd: 'prime', ids: share(k).map((u) => firstIds.get(u)?.[0] as string), timeoutMs: 60_000 }, 'primed', 70_000),
      ),
    )
    const primeBad = primed.reduce((a, r) => a + r.missing + r.mismatched, 0)
    if (primeBad > 0) throw new Error(`priming event not delivered as published: ${JSON.stringify(primed)}`)
    const rssWithStreams = server.rss()
    const commandsOpen = await commands()

    // 3. Drop every stream at once; wait until the service has closed its side.
    t = process.hrtime.bigint()
    await Promise.all(workers.map((w) => ask(w, { cmd: 'drop' }, 'dropped', 60_000)))
    await waitFor('the server to close the dropped streams', () => serviceConnections(port) <= OWN_CONNECTIONS, 120_000)
    const dropSettledMs = sinceMs(t)

    // 4. Publish what they miss while away.
    t = process.hrtime.bigint()
    const missedIds = await publishRounds(publish, users, 1, o.missed)
    const publishMs = sinceMs(t)
    await waitQuiet(pid)
    const expected = (us: string[]) => us.map((u) => missedIds.get(u) as string[])
    await Promise.all(workers.map((w, k) => ask(w, { cmd: 'expect', ids: expected(share(k)) }, 'expected', 60_000)))
    const redisUsed = onRedis ? Number(/used_memory:(\d+)/.exec(await deps.redisInfo())?.[1] ?? NaN) : undefined
    const commandsBeforeStorm = await commands()
    if (o.ssubscribeLog && onRedis) await deps.slowlog.start()

    // 5. The storm: every stream reconnects at once with its Last-Event-ID.
    const before = server.rss()
    const hwm = server.resetPeak()
    let peakRss = before
    let peakFds = 0
    let polls = 0
    const poller = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, server.rss())
        if (polls++ % 2 === 0) peakFds = Math.max(peakFds, fdsOf(pid))
      } catch {
        // the server exited; reported below
      }
    }, 100)
    const benchLoop = monitorEventLoopDelay({ resolution: 10 })
    benchLoop.enable()
    const cpuBefore = server.cpu()
    const tcpBefore = tcpCounters()
    const load = loadavg()[0] as number
    const t0 = process.hrtime.bigint()
    const reports = await Promise.all(
      workers.map((w) =>
        ask<StormReport>(w, { cmd: 'storm', port, t0: String(t0), timeoutMs: o.timeoutMs, inFlight: o.inFlight }, 'stormed', o.timeoutMs + 60_000),
      ),
    )
    clearInterval(poller)
    benchLoop.disable()
    const tcpAfter = tcpCounters()
    const commandsAfterStorm = await commands()
    const ssubscribes = o.ssubscribeLog && onRedis ? await deps.slowlog.ssubscribes() : undefined
    const stormCommands = commandsBetween(commandsBeforeStorm, commandsAfterStorm, WATCHED)
    const kernelTcp = Object.fromEntries(TCP_COUNTERS.map((k) => [k, (tcpAfter[k] as number) - (tcpBefore[k] as number)]))
    const exited = server.exited()
    const alive = exited === undefined
    const after = alive ? server.rss() : NaN
    const stormCpuS = alive ? +(server.cpu() - cpuBefore).toFixed(2) : NaN
    if (hwm !== undefined && alive) peakRss = Math.max(peakRss, hwm())

    const headers = reports.flatMap((r) => r.headersMs)
    const done = reports.flatMap((r) => r.doneMs)
    const problems = mergeProblems(reports.map((r) => r.problems))
    const clean = done.length === o.streams && problemCount(problems) === 0 && alive
    const missedEvents = o.streams * o.missed
    const result = {
      scenario: 'storm',
      target,
      broker: target === 'nchan' ? 'nchan (nginx shared memory)' : o.embedded ? 'embedded' : 'redis',
      run,
      streams: o.streams,
      missedPerStream: o.missed,
      // Nchan has no auth cache: every reconnect costs it one upstream call.
      authCache: target === 'ours' && o.authCache,
      reconnectsInFlight: o.inFlight > 0 ? o.inFlight * o.workers : 'all',
      ports: { service: port, upstream: Number(new URL(deps.upstream).port) },
      connectMs,
      dropSettledMs,
      publishMs,
      publishPerS: Math.round((o.streams * o.missed) / (publishMs / 1000)),
      allHeadersMs: headers.length === o.streams ? Math.round(Math.max(...headers)) : null,
      allCaughtUpMs: done.length === o.streams ? Math.round(Math.max(...done)) : null,
      headersMs: dist(headers),
      caughtUpMs: dist(done),
      tcpConnectMs: dist(reports.flatMap((r) => r.tcpMs)),
      caughtUp: done.length,
      // The missed events that came after the reconnect (the service replays
      // its history; whether Nchan replays its buffer is what this says).
      replayed: { events: missedEvents - problems.lostEvents, of: missedEvents },
      rssIdleMiB: MiB(rssIdle),
      rssWithStreamsMiB: MiB(rssWithStreams),
      rssBeforeStormMiB: MiB(before),
      peakRssMiB: MiB(peakRss),
      peakFromHwm: hwm !== undefined,
      rssAfterStormMiB: MiB(after),
      serviceFdsIdle: fdIdle,
      serviceFdsPeak: peakFds,
      stormCpuS,
      kernelTcp,
      // The load generator's own health: when its workers started and finished
      // dialling (ms after t0) and the longest event-loop stall of the workers
      // and of the bench process (which also serves the auth upstream).
      clients: {
        dialStartMs: Math.round(Math.max(...reports.map((r) => r.dialStartMs))),
        dialEndMs: Math.round(Math.max(...reports.map((r) => r.dialEndMs))),
        workerLoopDelayMaxMs: Math.round(Math.max(...reports.map((r) => r.loopDelayMaxMs))),
        benchLoopDelayMaxMs: Math.round(benchLoop.max / 1e6),
      },
      loadAvg1m: +load.toFixed(2),
      ...(onRedis && {
        // What Redis ran in each phase: the first connects (and the priming
        // publish), the drop and the missed events' publish, the storm.
        redisCommands: {
          open: commandsBetween(commandsIdle, commandsOpen, WATCHED),
          dropAndPublish: commandsBetween(commandsOpen, commandsBeforeStorm, WATCHED),
          storm: stormCommands,
        },
        ssubscribePerReconnect: +((stormCommands.ssubscribe?.calls ?? 0) / o.streams).toFixed(4),
        channelsPerSsubscribe: stormCommands.ssubscribe ? +(o.streams / stormCommands.ssubscribe.calls).toFixed(1) : null,
        ...(ssubscribes !== undefined && { ssubscribeBatches: ssubscribes }),
      }),
      ...(redisUsed !== undefined && { redisUsedMiB: MiB(redisUsed) }),
      ...(target === 'ours' && process.env.STORM_SERVICE_NODE_OPTIONS && { stormT0Us: Number(t0 / 1000n) }),
      serviceAlive: alive,
      ...(exited !== undefined && { serviceExit: exited }),
      clean,
      problems,
      ...server.evidence(),
    }
    return result
  } finally {
    await Promise.all(workers.map((w) => ask(w, { cmd: 'close' }, 'closed', 30_000).catch(() => {})))
    await server.stop()
  }
}

function mergeProblems(all: Problems[]): Problems {
  const out = check([], [])
  for (const p of all) {
    for (const [k, v] of Object.entries(p) as [keyof Problems, unknown][]) {
      if (k === 'samples') out.samples.push(...(v as unknown[]))
      else if (typeof v === 'number') (out[k] as number) += v
      else for (const [code, n] of Object.entries(v as Record<string, number>)) (out[k] as Record<string, number>)[code] = ((out[k] as Record<string, number>)[code] ?? 0) + n
    }
  }
  out.samples = out.samples.slice(0, 8)
  return out
}

function problemCount(p: Problems): number {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0)
  return sum(p.badStatus) + sum(p.errors) + p.closedEarly + p.stuck + p.resyncs + p.lostEvents + p.dupEvents + p.extraEvents + p.outOfOrder + p.badPayload
}

interface Deps {
  workers: Worker[]
  upstream: string
  /** Starts the server a run measures: the service (bench/storm-server.ts) or Nchan (bench/nchan/storm-server.ts). */
  startServer: (target: Target) => Promise<StormServer>
  redisInfo: () => Promise<string>
  redisCommands: () => Promise<CommandStats>
  slowlog: { start(): Promise<void>; ssubscribes(): Promise<Record<string, unknown>> }
}

type CommandStats = import('./redis-topology.js').CommandStats
// From ./redis-topology.js, imported in main() (the workers never load it).
let commandsBetween: typeof import('./redis-topology.js').commandsBetween
let WATCHED: string[] = []

/**
 * SSUBSCRIBE commands in SLOWLOG entries: how many channels each carried.
 * Redis keeps at most 32 arguments of an entry, the last one then saying
 * "... (N more arguments)".
 */
function ssubscribeSizes(entries: unknown[]): number[] {
  const sizes: number[] = []
  for (const e of entries as [number, number, number, string[]][]) {
    const args = e[3]
    if (String(args[0]).toLowerCase() !== 'ssubscribe') continue
    const more = /^\.\.\. \((\d+) more arguments\)$/.exec(String(args.at(-1)))
    sizes.push(more ? args.length - 2 + Number(more[1]) : args.length - 1)
  }
  return sizes
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const { startRedis, startUpstream, serviceScript, REPO } = await import('./lib.js')
  const { Redis } = await import('ioredis')
  const { buildPublisher } = await import('./load/publisher.js')
  const { startServiceStormServer } = await import('./storm-server.js')
  const { startNchanStormServer } = await import('./nchan/storm-server.js')
  const topology = await import('./redis-topology.js')
  commandsBetween = topology.commandsBetween
  WATCHED = topology.WATCHED
  const serviceDir = resolve(o.service ?? REPO)
  if (!existsSync(serviceScript(serviceDir))) throw new Error(`${serviceScript(serviceDir)} missing: build it (npm run build)`)

  const workerProcs: ChildProcess[] = []
  process.on('exit', () => {
    for (const p of workerProcs) if (p.exitCode === null) p.kill('SIGKILL')
  })
  // Whatever happens, stop by itself.
  setTimeout(() => {
    console.error('storm: global time limit reached')
    process.exit(2)
  }, o.targets.length * o.runs * (o.timeoutMs + 900_000)).unref()

  // The service's broker and publisher (idle while Nchan runs: not in its figures).
  const redis = await startRedis()
  const upstream = await startUpstream()
  const client = new Redis(redis.url)
  // The build's own publisher (redis/publish.lua of that build: since per-user
  // routing it publishes on the user's own channel, before on the classic one).
  const built = await buildPublisher(serviceDir, { url: redis.url }, { channel: 'notifications', historySize: HISTORY_SIZE })
  const publisher = built.publisher
  const slowlog = {
    start: async () => {
      await client.config('SET', 'slowlog-max-len', '200000')
      await client.config('SET', 'slowlog-log-slower-than', '0')
      await client.call('SLOWLOG', 'RESET')
    },
    ssubscribes: async () => {
      await client.config('SET', 'slowlog-log-slower-than', '-1')
      const sizes = ssubscribeSizes((await client.call('SLOWLOG', 'GET', '200000')) as unknown[]).sort((a, b) => a - b)
      await client.call('SLOWLOG', 'RESET')
      await client.config('SET', 'slowlog-log-slower-than', '10000')
      const count = (lo: number, hi: number) => sizes.filter((n) => n >= lo && n <= hi).length
      return {
        commands: sizes.length,
        channels: sizes.reduce((a, b) => a + b, 0),
        channelsPerCommand: { min: sizes[0] ?? null, p50: sizes.length ? median(sizes) : null, max: sizes.at(-1) ?? null },
        commandsBySize: { '1': count(1, 1), '2-9': count(2, 9), '10-99': count(10, 99), '100-999': count(100, 999), '1000': count(1000, Infinity) },
      }
    },
  }
  const workers = await Promise.all(Array.from({ length: o.workers }, () => startWorker(fileURLToPath(import.meta.url), ['--storm-worker'])))
  workerProcs.push(...workers.map((w) => w.proc))

  const startServer = (target: Target): Promise<StormServer> =>
    target === 'nchan'
      ? startNchanStormServer({ upstream, backlog: o.backlog === undefined ? undefined : Number(o.backlog) })
      : startServiceStormServer({
          script: serviceScript(serviceDir),
          upstream,
          redis: o.embedded ? undefined : { url: redis.url, publisher },
          authCache: o.authCache,
          backlog: o.backlog,
          historySize: HISTORY_SIZE,
        })
  let cleanRuns = 0
  for (const target of o.targets) {
    const results: Record<string, unknown>[] = []
    for (let run = 1; run <= o.runs; run++) {
      await client.flushall()
      const r = await runOnce(o, target, run, {
        workers,
        upstream,
        startServer,
        redisInfo: () => client.info('memory'),
        redisCommands: async () => topology.parseCommandStats(await client.info('commandstats')),
        slowlog,
      })
      console.log(JSON.stringify(r))
      results.push(r)
    }
    const summary = summarize(o, target, results, target === 'ours' ? { node: process.version, service: serviceDir, publishRouting: built.routing } : {})
    cleanRuns += summary.cleanRuns as number
    console.log(JSON.stringify(summary))
  }
  built.close()
  await client.quit()
  process.exit(cleanRuns === o.targets.length * o.runs ? 0 : 1)
}

/** One target's runs: medians and ranges of the figures BENCHMARKS.md quotes. */
function summarize(o: Options, target: Target, results: Record<string, unknown>[], about: Record<string, unknown>): Record<string, unknown> {
  const pick = (k: string) => results.map((r) => r[k] as number | null)
  const summary: Record<string, unknown> = {
    scenario: 'storm-summary',
    target,
    broker: results[0]?.broker,
    streams: o.streams,
    missedPerStream: o.missed,
    runs: o.runs,
    ...about,
  }
  for (const k of ['allCaughtUpMs', 'allHeadersMs', 'connectMs', 'publishMs', 'rssIdleMiB', 'rssWithStreamsMiB', 'rssBeforeStormMiB', 'peakRssMiB', 'stormCpuS', 'serviceFdsPeak']) {
    // A run in which some stream never caught up counts as "not reached" (Infinity, printed null).
    const v = pick(k).map((x) => (typeof x === 'number' && !Number.isNaN(x) ? x : Infinity)).sort((a, b) => a - b)
    const show = (x: number | undefined) => (x === undefined || x === Infinity ? null : Math.round(x * 100) / 100)
    summary[k] = { median: show(median(v)), min: show(v[0]), max: show(v.at(-1)) }
  }
  summary.failedStreamsPerRun = results.map((r) => (r.streams as number) - (r.caughtUp as number))
  summary.replayedPerRun = results.map((r) => (r.replayed as { events: number }).events)
  summary.loadAvg1mPerRun = results.map((r) => r.loadAvg1m)
  for (const k of ['p50', 'p99'] as const) {
    summary[`caughtUp_${k}_Ms`] = median(results.map((r) => (r.caughtUpMs as Record<string, number>)[k] as number).sort((x, y) => x - y))
  }
  if (target === 'ours') {
    summary.ssubscribePerReconnect = results.map((r) => r.ssubscribePerReconnect)
    summary.channelsPerSsubscribe = results.map((r) => r.channelsPerSsubscribe)
  }
  summary.cleanRuns = results.filter((r) => r.clean).length
  return summary
}

if (process.argv.includes('--storm-worker')) worker()
else
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
