// An HTTP/1.1 response read as an event stream from a raw socket: the head,
// chunked decoding (or a body that ends with the connection, as Nchan sends
// it), then SSE lines. No SSE library in the measuring path.
// Feed it latin1 strings (one char per byte, so chunk sizes count in chars).

export interface SseEvent {
  id: string | undefined
  type: string | undefined
  data: string
}

type ParseState = 'head' | 'size' | 'data' | 'crlf' | 'end' | 'untilClose' | 'other'

export interface SseHooks<C> {
  head?: (c: C) => void
  comment?: (c: C, text: string) => void
  event?: (c: C, e: SseEvent) => void
}

/** Subclass it to keep per-stream state; hooks receive the subclass instance. */
export class SseReader<C = unknown> {
  state: ParseState = 'head'
  buf = ''
  left = 0
  line = ''
  evId: string | undefined
  evType: string | undefined
  evData: string | undefined
  status = 0
  /** The first 300 characters of a response that is not a stream. */
  body = ''

  constructor(private readonly hooks: SseHooks<C>) {}

  feed(chunk: string): void {
    let i = 0
    while (i < chunk.length) {
      switch (this.state) {
        case 'head': {
          this.buf += i === 0 ? chunk : chunk.slice(i)
          i = chunk.length
          const end = this.buf.indexOf('\r\n\r\n')
          if (end < 0) break
          const head = this.buf.slice(0, end)
          const rest = this.buf.slice(end + 4)
          this.buf = ''
          this.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
          const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head)
          // [spec] RFC 9112 6.3: without Transfer-Encoding and Content-Length,
          // the body is whatever comes until the server closes the connection.
          const untilClose = !chunked && !/\r\ncontent-length:/i.test(head)
          this.state = this.status !== 200 ? 'other' : chunked ? 'size' : untilClose ? 'untilClose' : 'other'
          this.hooks.head?.(this as unknown as C)
          chunk = rest
          i = 0
          break
        }
        case 'size': {
          const nl = chunk.indexOf('\n', i)
          if (nl < 0) {
            this.buf += chunk.slice(i)
            i = chunk.length
            break
          }
          const size = parseInt((this.buf + chunk.slice(i, nl)).split(';')[0]?.trim() ?? '', 16)
          this.buf = ''
          i = nl + 1
          if (size === 0 || Number.isNaN(size)) this.state = 'end'
          else {
            this.left = size
            this.state = 'data'
          }
          break
        }
        case 'data': {
          // latin1: one char per byte, so chunk sizes can be counted in chars.
          const n = Math.min(this.left, chunk.length - i)
          this.sse(chunk.slice(i, i + n))
          i += n
          this.left -= n
          if (this.left === 0) this.state = 'crlf'
          break
        }
        case 'untilClose':
          this.sse(i === 0 ? chunk : chunk.slice(i))
          i = chunk.length
          break
        case 'crlf': {
          const nl = chunk.indexOf('\n', i)
          if (nl < 0) i = chunk.length
          else {
            i = nl + 1
            this.state = 'size'
          }
          break
        }
        default:
          if (this.body.length < 300) this.body += chunk.slice(i, i + 300)
          i = chunk.length
      }
    }
  }

  // [spec] WHATWG HTML 9.2.6: lines end in LF (or CRLF); a blank line dispatches.
  sse(text: string): void {
    let start = 0
    for (;;) {
      const nl = text.indexOf('\n', start)
      if (nl < 0) {
        this.line += text.slice(start)
        return
      }
      let line = this.line + text.slice(start, nl)
      this.line = ''
      start = nl + 1
      if (line.endsWith('\r')) line = line.slice(0, -1)
      if (line === '') {
        // A `position` event is where the service says a stream stands (a
        // first visit, a resync), not a notification of the load.
        if (this.evData !== undefined && this.evType !== 'position') {
          this.hooks.event?.(this as unknown as C, { id: this.evId, type: this.evType, data: this.evData })
        }
        this.evId = this.evType = this.evData = undefined
      } else if (line.startsWith(':')) {
        this.hooks.comment?.(this as unknown as C, line.slice(1).trimStart())
      } else {
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        let value = colon < 0 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'id') this.evId = value
        else if (field === 'event') this.evType = value
        else if (field === 'data') this.evData = this.evData === undefined ? value : `${this.evData}\n${value}`
      }
    }
  }
}
