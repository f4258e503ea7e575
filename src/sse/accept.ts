// Which stream format a GET /notify asks for, from its Accept header; pure.
// [spec] RFC 9110, section 12.5.1 (Accept): a media range is `type/subtype`,
// `type/*` or `*/*` with optional parameters, then an optional weight `q` (0 to
// 1, three decimals at most; 0 means "not acceptable"), then extensions. A
// representation takes the weight of the most specific range that matches it:
// a type with parameters over the bare type, over `type/*`, over `*/*`.

/** `sse`: text/event-stream (the default); `ndjson`: application/x-ndjson. */
export type Format = 'sse' | 'ndjson'

interface Offer {
  format: Format
  type: string
  subtype: string
}

/** What /notify can send, in the service's order of preference (ties go to the first). */
const OFFERS: readonly Offer[] = [
  { format: 'sse', type: 'text', subtype: 'event-stream' },
  { format: 'ndjson', type: 'application', subtype: 'x-ndjson' },
]
/** Both are sent with this parameter, and no other: a range naming another value does not match. */
const CHARSET = 'utf-8'

interface Range {
  type: string
  subtype: string
  /** Parameters before `q`, names lower-cased. */
  params: Map<string, string>
  q: number
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const WEIGHT = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/
// One element of the list: commas and semicolons inside quoted strings are no separators.
const ELEMENT = /(?:[^,"]|"(?:[^"\\]|\\.)*")+/g
const PARAM = /(?:[^;"]|"(?:[^"\\]|\\.)*")+/g

function unquote(value: string): string {
  return value.startsWith('"') && value.endsWith('"') && value.length >= 2 ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value
}

/** One element of Accept, or undefined when it is not a valid media range (it is then ignored). */
function parseRange(element: string): Range | undefined {
  const [range = '', ...rest] = (element.match(PARAM) ?? []).map((part) => part.trim())
  const slash = range.indexOf('/')
  const type = range.slice(0, slash).toLowerCase()
  const subtype = range.slice(slash + 1).toLowerCase()
  if (slash < 0 || !TOKEN.test(type) || !TOKEN.test(subtype) || (type === '*' && subtype !== '*')) return undefined
  const params = new Map<string, string>()
  let q = 1
  for (const param of rest) {
    const eq = param.indexOf('=')
    const name = param.slice(0, eq).trim().toLowerCase()
    const value = unquote(param.slice(eq + 1).trim())
    if (eq < 0 || !TOKEN.test(name)) return undefined
    if (name === 'q') {
      if (!WEIGHT.test(value)) return undefined
      q = Number(value)
      // What follows the weight is an extension of Accept, not a parameter of the type.
      break
    }
    params.set(name, value)
  }
  return { type, subtype, params, q }
}

/** How specific `range` is about `offer`: -1 when it does not match it at all. */
function specificity(range: Range, offer: Offer): number {
  if (range.type === '*') return 0
  if (range.type !== offer.type) return -1
  if (range.subtype === '*') return 1
  if (range.subtype !== offer.subtype) return -1
  for (const [name, value] of range.params) {
    if (name !== 'charset' || value.toLowerCase() !== CHARSET) return -1
  }
  return range.params.size > 0 ? 3 : 2
}

/**
 * The format to stream in, or undefined when the client accepts neither
 * (answered 406). No Accept header, an empty one or one without a single valid
 * media range is as if absent: SSE, what a plain EventSource gets.
 */
export function negotiate(accept: string | undefined): Format | undefined {
  const ranges: Range[] = []
  for (const element of accept?.match(ELEMENT) ?? []) {
    const range = parseRange(element)
    if (range !== undefined) ranges.push(range)
  }
  if (ranges.length === 0) return 'sse'
  let best: Format | undefined
  let bestQ = 0
  for (const offer of OFFERS) {
    let q = 0
    let most = -1
    for (const range of ranges) {
      const s = specificity(range, offer)
      if (s > most) {
        most = s
        q = range.q
      }
    }
    if (q > bestQ) {
      best = offer.format
      bestQ = q
    }
  }
  return best
}
