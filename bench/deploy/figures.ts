// The deploy's figures, computed from every client's connection attempts
// (event-source.ts) and the times of each restart. Pure. Times in ms after the
// run's t0.
import { dist } from '../load/stats.js'
import type { Attempt } from './event-source.js'

export interface Restart {
  instance: number
  port: number
  sigtermAt: number
  exitedAt: number
  readyAt: number
  /** How the old process ended (`code 0` is a clean drain). */
  exit: string
}

const round = (x: number) => Math.round(x)

/** The attempt that was live on `port` when SIGTERM was sent, if any. */
function heldAt(timeline: Attempt[], port: number, at: number): number {
  return timeline.findIndex((a) => a.port === port && a.liveAt !== null && a.liveAt <= at && (a.endAt === null || a.endAt > at))
}

/** Where an instance was in its restart at time `t`: draining (SIGTERM sent, not exited), down (exited, not ready) or up. */
function stateAt(restarts: Restart[], port: number, t: number): 'draining' | 'down' | 'up' {
  const r = restarts.find((x) => x.port === port && t >= x.sigtermAt && t < x.readyAt)
  return r === undefined ? 'up' : t < r.exitedAt ? 'draining' : 'down'
}

/** What restart `r` cost the streams that were on its instance when it got SIGTERM. */
export function restartFigures(r: Restart, restarts: Restart[], timelines: Attempt[][]) {
  let streams = 0
  let notBack = 0
  let reconnects = 0
  let worstGapMs = 0
  let lastEndMs = 0
  const backMs: number[] = []
  const dialToLiveMs: number[] = []
  /** How the attempts between the drop and the return ended, and where their instance was then. */
  const failed: Record<string, number> = {}
  for (const tl of timelines) {
    const h = heldAt(tl, r.port, r.sigtermAt)
    if (h < 0) continue
    streams++
    const held = tl[h] as Attempt
    const back = tl.findIndex((a, i) => i > h && a.liveAt !== null)
    if (held.endAt !== null) lastEndMs = Math.max(lastEndMs, held.endAt - r.sigtermAt)
    if (held.endAt === null || back < 0) {
      notBack++
      continue
    }
    const returned = tl[back] as Attempt
    reconnects += back - h
    for (const a of tl.slice(h + 1, back)) {
      // When it failed: a connect in flight when SIGTERM lands fails while its instance is draining.
      const key = `${a.outcome}, instance ${stateAt(restarts, a.port, a.endAt ?? a.dialAt)}`
      failed[key] = (failed[key] ?? 0) + 1
    }
    backMs.push((returned.liveAt as number) - r.sigtermAt)
    dialToLiveMs.push((returned.liveAt as number) - returned.dialAt)
    worstGapMs = Math.max(worstGapMs, (returned.liveAt as number) - held.endAt)
  }
  const lastBackMs = backMs.length > 0 ? Math.max(...backMs) : 0
  return {
    instance: r.instance,
    port: r.port,
    sigtermAtMs: round(r.sigtermAt),
    /** SIGTERM to exit: the drain; within it, when the last of its streams ended and when it stopped accepting connects. */
    drainMs: round(r.exitedAt - r.sigtermAt),
    streamsEndedMs: round(lastEndMs),
    listenerClosedMs: firstRefusedMs(r, timelines),
    exit: r.exit,
    /** SIGTERM to /readyz 200 of the new process. */
    readyMs: round(r.readyAt - r.sigtermAt),
    streams,
    /** SIGTERM until every stream that was on the instance is live again (null: some never came back). */
    allLiveMs: notBack === 0 ? round(lastBackMs) : null,
    notBack,
    liveAgainMs: dist(backMs),
    /** The returning connect alone: dialled until `: connected` (the rest is the retry wait and failed attempts). */
    returnConnectMs: dist(dialToLiveMs),
    reconnects,
    failedAttempts: failed,
    connectsPerS: connectRate(timelines, r.sigtermAt, r.sigtermAt + lastBackMs),
    /** The longest time one of these streams had no stream open. */
    worstGapMs: round(worstGapMs),
  }
}

export type RestartFigures = ReturnType<typeof restartFigures>

/** The first connect refused on the instance's port after SIGTERM, ms after it (null: none was tried before the exit). */
function firstRefusedMs(r: Restart, timelines: Attempt[][]): number | null {
  let first = Infinity
  for (const tl of timelines) {
    for (const a of tl) {
      if (a.port === r.port && a.outcome === 'refused' && a.dialAt >= r.sigtermAt && a.dialAt < r.exitedAt) first = Math.min(first, a.dialAt)
    }
  }
  return Number.isFinite(first) ? round(first - r.sigtermAt) : null
}

/**
 * Streams that went live (on any instance) between `from` and `to`: what the
 * fleet absorbed, on average and in its busiest second (seconds counted from `from`).
 */
function connectRate(timelines: Attempt[][], from: number, to: number): { avg: number; peak: number } {
  const perSecond: number[] = []
  let n = 0
  for (const tl of timelines) {
    for (const a of tl) {
      if (a.liveAt === null || a.liveAt < from || a.liveAt > to) continue
      n++
      const s = Math.floor((a.liveAt - from) / 1000)
      perSecond[s] = (perSecond[s] ?? 0) + 1
    }
  }
  const seconds = (to - from) / 1000
  // Array.from: a second without a connect is a hole in perSecond.
  return { avg: seconds > 0 ? round(n / seconds) : 0, peak: Math.max(0, ...Array.from(perSecond, (x) => x ?? 0)) }
}

/** Over the whole run: every stream's gaps, and live streams that ended while their instance was not draining. */
export function runFigures(restarts: Restart[], timelines: Attempt[][]) {
  let worstGapMs = 0
  let drops = 0
  let attempts = 0
  let closedOutsideDrain = 0
  // The client sees its stream end a little after the process has exited.
  const draining = (a: Attempt) => restarts.some((r) => r.port === a.port && (a.endAt as number) >= r.sigtermAt && (a.endAt as number) <= r.exitedAt + 1000)
  for (const tl of timelines) {
    attempts += tl.length
    tl.forEach((a, i) => {
      if (a.liveAt === null || a.endAt === null) return
      drops++
      if (!draining(a)) closedOutsideDrain++
      const next = tl.slice(i + 1).find((b) => b.liveAt !== null)
      if (next !== undefined) worstGapMs = Math.max(worstGapMs, (next.liveAt as number) - a.endAt)
    })
  }
  return { attempts, drops, closedOutsideDrain, worstGapMs: round(worstGapMs) }
}
