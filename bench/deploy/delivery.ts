// Exactly-once, in order: what each stream received against what the
// publisher had acknowledged for its user. Pure; runs in the client workers.

/** What one stream received, in arrival order. */
export interface Received {
  user: string
  /** The `seq` of every `deploy` event, as it arrived. */
  seqs: number[]
  resyncs: number
  /** Events naming another user, unparsable ones, other event types. */
  foreign: number
}

export interface DeliveryCheck {
  streams: number
  acked: number
  delivered: number
  /** Acknowledged and never delivered. */
  lost: number
  lostStreams: number
  /** Deliveries of a seq the stream already had. */
  duplicates: number
  /** A new seq below one the stream already had. */
  outOfOrder: number
  /** Delivered but never acknowledged (a publish whose answer failed): not a fault. */
  unacked: number
  resyncs: number
  foreign: number
  /** Up to a few streams with a problem, to say what happened. */
  samples: unknown[]
}

const SAMPLES = 5

export function emptyCheck(): DeliveryCheck {
  return { streams: 0, acked: 0, delivered: 0, lost: 0, lostStreams: 0, duplicates: 0, outOfOrder: 0, unacked: 0, resyncs: 0, foreign: 0, samples: [] }
}

export function checkDeliveries(received: Received[], acked: Map<string, number[]>): DeliveryCheck {
  const out = emptyCheck()
  for (const r of received) {
    const want = new Set(acked.get(r.user) ?? [])
    const seen = new Set<number>()
    let top = -Infinity
    let duplicates = 0
    let outOfOrder = 0
    for (const seq of r.seqs) {
      if (seen.has(seq)) duplicates++
      else if (seq < top) outOfOrder++
      seen.add(seq)
      top = Math.max(top, seq)
    }
    const lost = [...want].filter((s) => !seen.has(s))
    out.streams++
    out.acked += want.size
    out.delivered += r.seqs.length
    out.lost += lost.length
    out.lostStreams += lost.length > 0 ? 1 : 0
    out.duplicates += duplicates
    out.outOfOrder += outOfOrder
    out.unacked += [...seen].filter((s) => !want.has(s)).length
    out.resyncs += r.resyncs
    out.foreign += r.foreign
    if ((lost.length > 0 || duplicates > 0 || outOfOrder > 0 || r.resyncs > 0) && out.samples.length < SAMPLES) {
      out.samples.push({ user: r.user, lost: lost.slice(0, 10), duplicates, outOfOrder, resyncs: r.resyncs, acked: [...want].sort((a, b) => a - b).slice(0, 20), received: r.seqs.slice(0, 20) })
    }
  }
  return out
}

export function mergeChecks(all: DeliveryCheck[]): DeliveryCheck {
  const out = emptyCheck()
  for (const c of all) {
    for (const k of Object.keys(out) as (keyof DeliveryCheck)[]) {
      if (k === 'samples') out.samples.push(...c.samples)
      else out[k] += c[k]
    }
  }
  out.samples = out.samples.slice(0, SAMPLES)
  return out
}
