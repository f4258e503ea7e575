// A load-generator worker (a forked child process): holds a share of the
// streams on raw sockets, one user each, bound to its own 127.0.0.x source
// address, and measures every delivery. Events carry `seq` and `t`, the
// publisher's process.hrtime.bigint() in nanoseconds: CLOCK_MONOTONIC, the
// same clock in every process of this machine, so arrival minus `t` is the
// latency from publish to the reader's socket.
import { connect, type Socket } from 'node:net'
import { type SseHooks, SseReader } from './sse-reader.js'

export type ToWorker =
  | { cmd: 'open'; port: number; users: string[]; localAddress?: string; inFlight: number; openComment: string; timeoutMs: number }
  | { cmd: 'measure' }
  | { cmd: 'report' }
  | { cmd: 'close' }

export interface Opened {
  type: 'opened'
  ok: number
  failed: number
  /** A few failures, to say why. */
  failures: string[]
  /** Per stream that connected: ms from dialling to the comment that opens it (`: connected`; Nchan's `: hi`). */
  connectTimesMs: number[]
}

export interface Report {
  type: 'report'
  /** Deliveries to the right stream since `measure`. */
  received: number
  /** Deliveries of an event that names neither this stream's user nor a list holding it. */
  misdelivered: number
  /** An event whose `seq` is not above the previous one this stream got (a duplicate or out of order). */
  outOfOrder: number
  /** Streams the server closed since they opened. */
  closed: number
  /** Latency of each delivery, in ms, in arrival order. */
  latencyMs: number[]
  /** Per event seq: the latest arrival among this worker's deliveries of it, in ms after `t`. */
  lastBySeq: Record<number, number>
}

/** One stream and its own counters. */
class Stream extends SseReader<Stream> {
  socket: Socket | undefined
  connected = false
  ended = false
  error: string | undefined
  lastSeq = -1
  /** When it was dialled, and ms from then to its open comment. */
  dialledAt = 0n
  connectMs = NaN
  wake: (() => void) | undefined

  constructor(
    readonly user: string,
    /** The comment that says the stream is open: `connected`, or Nchan's `hi`. */
    readonly openComment: string,
    hooks: SseHooks<Stream>,
  ) {
    super(hooks)
  }
}

export function runWorker(): void {
  const send = (m: Opened | Report | { type: string; [k: string]: unknown }): void => {
    process.send?.(m)
  }
  const streams: Stream[] = []
  let measuring = false
  let received = 0
  let misdelivered = 0
  let outOfOrder = 0
  let closed = 0
  let latencies = new Float64Array(1 << 16)
  let count = 0
  let lastBySeq: Record<number, number> = {}

  const record = (ms: number, seq: number) => {
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2)
      grown.set(latencies)
      latencies = grown
    }
    latencies[count++] = ms
    const last = lastBySeq[seq]
    if (last === undefined || ms > last) lastBySeq[seq] = ms
  }

  const hooks: SseHooks<Stream> = {
    head: (s) => {
      if (s.status !== 200) s.wake?.()
    },
    comment: (s, text) => {
      if (text !== s.openComment) return
      s.connected = true
      s.connectMs = Number(process.hrtime.bigint() - s.dialledAt) / 1e6
      s.wake?.()
    },
    event: (s, e) => {
      const now = process.hrtime.bigint()
      if (!measuring) return
      const ev = JSON.parse(e.data) as { recipient_id?: unknown; recipient_ids?: unknown[]; seq: number; t: string }
      const ms = Number(now - BigInt(ev.t)) / 1e6
      // A live multi-recipient frame carries no recipient (the service strips
      // the list); the broadcast publisher names every user.
      const mine =
        ev.recipient_id === undefined
          ? ev.recipient_ids === undefined || ev.recipient_ids.some((r) => String(r) === s.user)
          : String(ev.recipient_id) === s.user
      if (!mine) {
        misdelivered++
        return
      }
      if (ev.seq <= s.lastSeq) outOfOrder++
      s.lastSeq = ev.seq
      received++
      record(ms, ev.seq)
    },
  }

  const dial = (port: number, s: Stream, localAddress: string | undefined): void => {
    s.dialledAt = process.hrtime.bigint()
    const socket = connect({ port, host: '127.0.0.1', ...(localAddress !== undefined && { localAddress }) })
    s.socket = socket
    socket.setEncoding('latin1')
    socket.setNoDelay(true)
    socket.once('connect', () => {
      socket.write(`GET /notify HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nAuthorization: Bearer user-${s.user}\r\n\r\n`)
    })
    socket.on('data', (d: string) => s.feed(d))
    socket.on('error', (err: Error & { code?: string }) => {
      s.error ??= err.code ?? err.message
    })
    socket.once('close', () => {
      s.ended = true
      if (s.connected) closed++
      s.wake?.()
    })
  }

  // Adds to the streams held (a fleet opens each instance's share in turn);
  // dials, and answers for, only this call's. `measure`, `report` and `close`
  // cover every stream held.
  const open = async (m: Extract<ToWorker, { cmd: 'open' }>): Promise<void> => {
    const fresh = m.users.map((u) => new Stream(u, m.openComment, hooks))
    streams.push(...fresh)
    const failures: string[] = []
    let next = 0
    const lane = async (): Promise<void> => {
      for (let k = next++; k < fresh.length; k = next++) {
        const s = fresh[k] as Stream
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, m.timeoutMs)
          s.wake = () => {
            clearTimeout(timer)
            resolve()
          }
          dial(m.port, s, m.localAddress)
        })
        s.wake = undefined
        if (!s.connected) failures.push(`user ${s.user}: status ${s.status} error ${s.error ?? '-'} ${s.body.slice(0, 100)}`)
      }
    }
    await Promise.all(Array.from({ length: m.inFlight }, lane))
    const connectTimesMs = fresh.filter((s) => s.connected).map((s) => s.connectMs)
    send({ type: 'opened', ok: fresh.length - failures.length, failed: failures.length, failures: failures.slice(0, 3), connectTimesMs })
  }

  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: ToWorker) => {
    const run = async (): Promise<void> => {
      switch (m.cmd) {
        case 'open':
          return open(m)
        case 'measure':
          measuring = true
          received = misdelivered = outOfOrder = closed = count = 0
          lastBySeq = {}
          return send({ type: 'measuring' })
        case 'report':
          return send({
            type: 'report',
            received,
            misdelivered,
            outOfOrder,
            closed,
            latencyMs: Array.from(latencies.subarray(0, count)),
            lastBySeq,
          } satisfies Report)
        case 'close':
          for (const s of streams) s.socket?.destroy()
          streams.length = 0
          return send({ type: 'closed' })
      }
    }
    run().catch((err: unknown) => send({ type: 'error', message: String((err as Error)?.stack ?? err) }))
  })
  send({ type: 'ready' })
}
