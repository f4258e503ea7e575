// Reads GET /metrics and parses the Prometheus text format (0.0.4) into samples,
// independently of the code under test: labels in any order, escaped values.
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Metrics {
  text: string
  samples: Sample[]
  /** `# TYPE` of each family: counter, gauge, histogram, summary, untyped. */
  types: Map<string, string>
  /** The value of the sample with exactly these labels (none by default); undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined
  /** Every sample of that name, keyed by the value of one label (to compare whole families). */
  by(name: string, label: string): Record<string, number>
  /** True when a sample or a `# TYPE` line of that name (or family) exists. */
  has(name: string): boolean
}

export interface Scrape {
  status: number
  headers: Headers
  text: string
  metrics: Metrics
}

/** GET <base>/metrics, with `Authorization: Bearer <token>` when a token is given. */
export async function scrape(base: string, token?: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`, {
    headers: { ...(token !== undefined && { authorization: `Bearer ${token}` }), ...headers },
  })
  const text = await res.text()
  return {
    status: res.status,
    headers: res.headers,
    text,
    // Parsed on demand: a refusal's body is JSON.
    get metrics() {
      return parseMetrics(text)
    },
  }
}

/** Scrapes and fails loudly unless the answer is 200. */
export async function metricsOf(base: string, token?: string): Promise<Metrics> {
  const r = await scrape(base, token)
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.text.slice(0, 300)}`)
  return r.metrics
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/

export function parseMetrics(text: string): Metrics {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const m = /^#\s+TYPE\s+(\S+)\s+(\S+)/.exec(line)
      if (m) types.set(m[1] as string, m[2] as string)
      continue
    }
    samples.push(parseSample(line))
  }
  const sameLabels = (a: Record<string, string>, b: Record<string, string>) => {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k])
  }
  return {
    text,
    samples,
    types,
    value: (name, labels = {}) => samples.find((s) => s.name === name && sameLabels(s.labels, labels))?.value,
    by: (name, label) => {
      const out: Record<string, number> = {}
      for (const s of samples) {
        if (s.name !== name) continue
        const key = s.labels[label]
        if (key === undefined) throw new Error(`${name} has a sample without the label ${label}`)
        if (key in out) throw new Error(`${name} has two samples with ${label}="${key}"`)
        out[key] = s.value
      }
      return out
    },
    has: (name) => types.has(name) || samples.some((s) => s.name === name),
  }
}

function parseSample(line: string): Sample {
  const nameMatch = NAME.exec(line)
  if (!nameMatch) throw new Error(`not a sample line: ${line}`)
  const name = nameMatch[0]
  let i = name.length
  const labels: Record<string, string> = {}
  if (line[i] === '{') {
    i++
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++
      if (line[i] === '}') {
        i++
        break
      }
      const key = NAME.exec(line.slice(i))?.[0]
      if (key === undefined) throw new Error(`bad label name at ${i}: ${line}`)
      i += key.length
      if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`bad label at ${i}: ${line}`)
      i += 2
      let value = ''
      for (;;) {
        const c = line[i]
        if (c === undefined) throw new Error(`unterminated label value: ${line}`)
        if (c === '"') {
          i++
          break
        }
        if (c === '\\') {
          const next = line[i + 1]
          value += next === 'n' ? '\n' : (next ?? '')
          i += 2
          continue
        }
        value += c
        i++
      }
      labels[key] = value
    }
  }
  const [raw] = line.slice(i).trim().split(/\s+/)
  // prom-client writes NaN as `Nan`.
  const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw)
  if (raw === undefined || (Number.isNaN(value) && raw.toLowerCase() !== 'nan')) throw new Error(`bad value: ${line}`)
  return { name, labels, value }
}
