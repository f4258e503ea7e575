// Browser client for notify-sse: a dependency-free ES module, served by the
// service at /client.js and exported as `notify-sse/client`. It wraps
// EventSource where the plain one falls short:
//   - a plain EventSource gives up for good after any non-200 answer (a 503
//     during an auth outage, a 429 from a limit); this one retries with
//     exponential backoff and jitter, and waits at least the answer's Retry-After;
//   - it stores the last event id (or the position the service announces to
//     a stream that has none yet), so a fresh page load resumes with
//     ?lastEventId= and misses nothing between pages;
//   - `auth-expired` and 401 call the app's onAuthExpired (refresh the cookie),
//     then it reconnects; `resync` calls onResync;
//   - all tabs of one origin and user share one connection: a Web Lock elects
//     the tab that holds it, a BroadcastChannel hands its events to the others,
//     and when that tab closes another takes over from the last event it saw.
// Nothing runs at import time; this file must not import anything (it is
// served to browsers as one file).

/** Where the client stands. `resynced`: live, after the service said events were missed. */
export type NotifyState = 'connecting' | 'live' | 'resynced' | 'reconnecting' | 'closed'

/** One notification, as published. */
export interface NotifyMessage<T = unknown> {
  /** The SSE event name: the published `type`, or `message` for events without one. */
  type: string
  /** Its id in the recipient's history; null for events delivered live only (a plain PUBLISH, `live_only`). */
  id: string | null
  /** The published JSON object (the raw text if it is not JSON). */
  data: T
}

export interface NotifyOptions<T = unknown> {
  /** The service's /notify URL, absolute or relative to the page. */
  url: string | URL
  /**
   * Event types to receive besides untyped ones (`message`). EventSource only
   * dispatches named events to listeners for that name: list every `type` your
   * publishers use.
   */
  types?: readonly string[]
  /** Every notification, once, in order, in every tab. */
  onEvent?: (message: NotifyMessage<T>) => void
  /** Connection state changes (in every tab, for the shared connection). */
  onState?: (state: NotifyState) => void
  /** Events were missed beyond the service's history: refetch your state. */
  onResync?: () => void
  /**
   * The token expired (the stream got `auth-expired`, or a reconnect got 401).
   * Refresh the auth cookie, then return (or resolve) anything but `false` to
   * reconnect; `false` stops the client (state `closed`). Without it, the
   * client keeps retrying with backoff.
   */
  onAuthExpired?: () => unknown
  /**
   * The signed-in user (any string that identifies them in the page). Tabs
   * share a connection, and the stored last event id, only with tabs of the
   * same user. Default ''.
   */
  user?: string
  /** Share one connection among tabs (Web Locks + BroadcastChannel). Default true. */
  share?: boolean
  /** Send cookies to another origin (EventSource `withCredentials`). Default true. */
  withCredentials?: boolean
  /** Where the last event id is kept across page loads. Default `localStorage`; null: nowhere. */
  storage?: Pick<Storage, 'getItem' | 'setItem'> | null
  /** Reconnect delays: doubled from `initialMs` per failed attempt up to `maxMs`, with jitter. */
  backoff?: { initialMs?: number; maxMs?: number }
}

export interface NotifyClient {
  readonly state: NotifyState
  /** True in the tab that holds the connection (every tab when not sharing). */
  readonly leader: boolean
  /** The id of the last stored event this tab received. */
  readonly lastEventId: string | null
  /** Closes the connection (another tab takes it over) and stops reconnecting. */
  close(): void
}

// ---- pure parts ------------------------------------------------------------

export interface Backoff {
  initialMs: number
  maxMs: number
}

/**
 * The wait before reconnect attempt `attempt` (0 for the first): the doubled
 * delay, capped, with "equal jitter" (between half and all of it), so that
 * clients dropped together do not come back together.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30))
  return ceiling / 2 + random() * (ceiling / 2)
}

/** Retry-After (delta-seconds or an HTTP date) in milliseconds from `now`; null if absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null) return null
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // An HTTP date names its day and month; Date.parse alone would take '-3' for a year.
  const date = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN
  return Number.isNaN(date) ? null : Math.max(0, date - now)
}

/**
 * The wait before the next attempt: the backoff, and never less than what the
 * service asked for. Up to a quarter is added to Retry-After, so that clients
 * refused together spread out instead of returning at the same instant.
 */
export function retryDelay(
  attempt: number,
  backoff: Backoff,
  retryAfterMs: number | null,
  random: () => number = Math.random,
): number {
  const wait = backoffDelay(attempt, backoff, random)
  return retryAfterMs === null ? wait : Math.max(wait, retryAfterMs * (1 + random() / 4))
}

/** The last `limit` events that carry an id, to drop the copies a handover or a page reload can bring. */
export class RecentEvents<T> {
  #events: NotifyMessage<T>[] = []
  #ids = new Set<string>()
  constructor(private readonly limit: number) {}

  /** Remembers the event; false if it was seen already. Events without id are never duplicates. */
  add(message: NotifyMessage<T>): boolean {
    if (message.id === null) return true
    if (this.#ids.has(message.id)) return false
    this.#ids.add(message.id)
    this.#events.push(message)
    if (this.#events.length > this.limit) this.#ids.delete((this.#events.shift() as NotifyMessage<T>).id as string)
    return true
  }

  /** What came after `id`, oldest first; null if `id` is not among the remembered events. */
  after(id: string): NotifyMessage<T>[] | null {
    const at = this.#events.findIndex((m) => m.id === id)
    return at === -1 ? null : this.#events.slice(at + 1)
  }
}

// ---- one EventSource, reconnected ------------------------------------------

/** What a Connection reports to its owner. */
interface Sink<T> {
  event(message: NotifyMessage<T>): void
  /** Where the stream stands, without an event (a first visit, a resync): resume from here. */
  position(id: string): void
  state(state: NotifyState): void
  resync(): void
  /** Resolves false to stop. */
  authExpired(): Promise<boolean>
  /** The connection gave up for good (onAuthExpired said false). */
  stopped(): void
}

interface Settings<T> {
  url: URL
  types: readonly string[]
  withCredentials: boolean
  backoff: Backoff
  sink: Sink<T>
}

/** A stream that stayed open this long was healthy: the next failure starts the backoff over. */
const STABLE_MS = 10_000

class Connection<T> {
  #es: EventSource | null = null
  #timer: ReturnType<typeof setTimeout> | undefined
  #probe: AbortController | null = null
  #attempt = 0
  #openedAt = 0
  #stopped = false

  constructor(
    private readonly settings: Settings<T>,
    /** The id to resume from; updated with every stored event. */
    public lastEventId: string | null,
  ) {}

  start(initial: NotifyState): void {
    this.settings.sink.state(initial)
    this.#open()
  }

  stop(): void {
    this.#stopped = true
    this.#drop()
  }

  #open(): void {
    if (this.#stopped) return
    const { url, types, withCredentials, sink } = this.settings
    const target = new URL(url)
    if (this.lastEventId !== null) target.searchParams.set('lastEventId', this.lastEventId)
    const es = new EventSource(target, { withCredentials })
    this.#es = es
    // [spec] An event without an `id:` line keeps the previous lastEventId: an
    // event has its own id only when the value changes (ids never repeat).
    let previousId = ''
    const onMessage = (e: MessageEvent<string>): void => {
      const id = e.lastEventId !== previousId && e.lastEventId !== '' ? e.lastEventId : null
      previousId = e.lastEventId
      if (id !== null) this.lastEventId = id
      sink.event({ type: e.type, id, data: parseData(e.data) as T })
    }
    for (const type of new Set(['message', ...types])) es.addEventListener(type, onMessage as EventListener)
    es.addEventListener('open', () => {
      this.#openedAt = performance.now()
      sink.state('live')
    })
    // The service's `position` event: no notification, only where the stream
    // stands (a first visit, or after a resync), so that a connection that
    // drops before the next stored event still resumes from here.
    es.addEventListener('position', ((e: MessageEvent<string>) => {
      previousId = e.lastEventId
      if (e.lastEventId === '') return
      this.lastEventId = e.lastEventId
      sink.position(e.lastEventId)
    }) as EventListener)
    es.addEventListener('resync', () => {
      sink.state('resynced')
      sink.resync()
    })
    es.addEventListener('auth-expired', () => {
      // The service ends the stream right after this frame.
      this.#drop()
      sink.state('reconnecting')
      void this.#afterAuthExpired(() => this.#open())
    })
    es.addEventListener('error', () => {
      if (this.#es !== es) return
      if (this.#openedAt > 0 && performance.now() - this.#openedAt >= STABLE_MS) this.#attempt = 0
      this.#openedAt = 0
      // CLOSED: the service answered something other than a stream (401, 429,
      // 503...) and EventSource gave up; it cannot tell us the status, so ask.
      // CONNECTING: the stream ended or the network failed; EventSource would
      // retry at a fixed pace, without jitter: do it ourselves.
      const refused = es.readyState === EventSource.CLOSED
      this.#drop()
      sink.state('reconnecting')
      if (refused) void this.#probeThenRetry()
      else this.#retry(null)
    })
  }

  /**
   * Asks /notify once with fetch, which sees the status and Retry-After. A 200
   * (the failure has passed) opens a stream server-side: it is closed at once,
   * and without lastEventId, so nothing is replayed into it.
   */
  async #probeThenRetry(): Promise<void> {
    const probe = new AbortController()
    this.#probe = probe
    let retryAfter: number | null = null
    let unauthorized = false
    try {
      const res = await fetch(this.settings.url, {
        credentials: this.settings.withCredentials ? 'include' : 'same-origin',
        headers: { accept: 'text/event-stream' },
        cache: 'no-store',
        signal: probe.signal,
      })
      if (res.ok) probe.abort()
      else {
        retryAfter = parseRetryAfter(res.headers.get('retry-after'))
        unauthorized = res.status === 401
        await res.body?.cancel()
      }
    } catch {
      // Network down, CORS refused, or stopped meanwhile: plain backoff.
    }
    if (this.#probe !== probe) return
    this.#probe = null
    if (unauthorized) await this.#afterAuthExpired(() => this.#retry(retryAfter))
    else this.#retry(retryAfter)
  }

  async #afterAuthExpired(then: () => void): Promise<void> {
    const go = await this.settings.sink.authExpired()
    if (this.#stopped) return
    if (go) then()
    else {
      this.stop()
      this.settings.sink.stopped()
    }
  }

  #retry(retryAfterMs: number | null): void {
    if (this.#stopped) return
    const delay = retryDelay(this.#attempt, this.settings.backoff, retryAfterMs)
    this.#attempt++
    this.#timer = setTimeout(this.#reopen, delay)
    // Back from offline (a laptop lid, a tunnel): no need to sit out the backoff,
    // unless the service asked for a pause.
    if (retryAfterMs === null) globalThis.addEventListener?.('online', this.#reopen)
  }

  #reopen = (): void => {
    this.#drop()
    this.#open()
  }

  /** Closes whatever is open or pending: the EventSource, a probe, a retry timer. */
  #drop(): void {
    this.#es?.close()
    this.#es = null
    this.#probe?.abort()
    this.#probe = null
    clearTimeout(this.#timer)
    this.#timer = undefined
    globalThis.removeEventListener?.('online', this.#reopen)
  }
}

function parseData(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

// ---- tabs: one leader holds the connection ---------------------------------

/** Messages between tabs on the BroadcastChannel. */
type TabMessage<T> =
  | { kind: 'event'; message: NotifyMessage<T> }
  | { kind: 'position'; id: string }
  | { kind: 'state'; state: NotifyState }
  | { kind: 'resync' }
  /** A tab that just loaded: what came after `since`, its id before the reload? */
  | { kind: 'hello'; tab: string; since: string | null }
  | { kind: 'welcome'; tab: string; state: NotifyState; missed: NotifyMessage<T>[] }

/** How many recent events each tab keeps, to fill a reloading tab's gap and drop copies. */
const RECENT_LIMIT = 256

/**
 * Opens the shared connection. Every tab calls this; one (the leader) holds
 * the EventSource, the others receive its events through a BroadcastChannel.
 */
export function connectNotify<T = unknown>(options: NotifyOptions<T>): NotifyClient {
  const url = new URL(options.url, globalThis.location?.href)
  const user = options.user ?? ''
  const key = `notify-sse:${url.href}:${user}`
  const storage = options.storage === undefined ? safeStorage('localStorage') : options.storage
  // This tab's own last id survives its reloads (sessionStorage is per tab).
  const tabStorage = options.storage === null ? null : safeStorage('sessionStorage')
  const storeKey = `${key}:lastEventId`
  const backoff: Backoff = { initialMs: 1000, maxMs: 30_000, ...options.backoff }
  const canShare =
    options.share !== false && typeof BroadcastChannel === 'function' && globalThis.navigator?.locks !== undefined

  const recent = new RecentEvents<T>(RECENT_LIMIT)
  // This tab's id of its previous page (a reload or navigation): what it asks the others for.
  const previousPageId = read(tabStorage, storeKey)
  let lastEventId: string | null = null
  // null until the first state is announced (in a microtask: never inside connectNotify).
  let state: NotifyState | null = null
  let everLive = false
  let leader = false
  let closed = false
  let connection: Connection<T> | null = null
  const channel = canShare ? new BroadcastChannel(key) : null
  const tabId = Math.random().toString(36).slice(2)
  const stopElection = new AbortController()
  let releaseLock: (() => void) | undefined

  const post = (message: TabMessage<T>): void => channel?.postMessage(message)

  /** Remembers where this tab stands (and, in the leader, where the browser does). */
  const standAt = (id: string): void => {
    lastEventId = id
    write(tabStorage, storeKey, id)
    if (leader) write(storage, storeKey, id)
  }
  /** Hands an event to the page, once, remembering where this tab stands. */
  const deliver = (message: NotifyMessage<T>): void => {
    if (closed || !recent.add(message)) return
    if (message.id !== null) standAt(message.id)
    options.onEvent?.(message)
  }
  const setState = (next: NotifyState): void => {
    if (closed && next !== 'closed') return
    if (next === 'live' || next === 'resynced') everLive = true
    if (next === state) return
    state = next
    options.onState?.(next)
  }

  const sink: Sink<T> = {
    position: (id) => {
      if (closed) return
      standAt(id)
      post({ kind: 'position', id })
    },
    event: (message) => {
      deliver(message)
      post({ kind: 'event', message })
      // The first event after a resync: the page has caught up.
      if (state === 'resynced') sink.state('live')
    },
    state: (next) => {
      setState(next)
      post({ kind: 'state', state: next })
    },
    resync: () => {
      if (!closed) options.onResync?.()
      post({ kind: 'resync' })
    },
    authExpired: async () => {
      if (options.onAuthExpired === undefined) return true
      try {
        return (await options.onAuthExpired()) !== false
      } catch {
        // A failed refresh is not a "stop": the next attempt comes after backoff.
        return true
      }
    },
    stopped: () => {
      // Refused for good in this tab: let another tab try (its app decides too).
      post({ kind: 'state', state: 'closed' })
      shutdown()
    },
  }

  /** Stops this tab for good: its connection, its part in the election, its channel. */
  const shutdown = (): void => {
    if (closed) return
    connection?.stop()
    setState('closed')
    closed = true
    leader = false
    stopElection.abort()
    releaseLock?.()
    channel?.close()
  }

  const lead = (): void => {
    leader = true
    // Resume from what this tab has seen; else its previous page; else the browser's last.
    const from = lastEventId ?? previousPageId ?? read(storage, storeKey)
    connection = new Connection<T>({ url, types: options.types ?? [], withCredentials: options.withCredentials ?? true, backoff, sink }, from)
    connection.start(everLive ? 'reconnecting' : 'connecting')
  }

  const start = (): void => {
    if (closed) return
    if (channel === null) return lead()
    setState('connecting')
    channel.onmessage = (e: MessageEvent<TabMessage<T>>) => {
      const m = e.data
      if (m.kind === 'hello') {
        if (!leader) return
        const missed = m.since === null ? [] : (recent.after(m.since) ?? [])
        post({ kind: 'welcome', tab: m.tab, state: state ?? 'connecting', missed })
        return
      }
      if (leader) return
      if (m.kind === 'event') deliver(m.message)
      else if (m.kind === 'position' && !closed) standAt(m.id)
      else if (m.kind === 'state') setState(m.state)
      else if (m.kind === 'resync' && !closed) options.onResync?.()
      else if (m.kind === 'welcome' && m.tab === tabId) {
        for (const message of m.missed) deliver(message)
        setState(m.state)
      }
    }
    post({ kind: 'hello', tab: tabId, since: previousPageId })
    navigator.locks
      .request(key, { signal: stopElection.signal }, () => {
        if (closed) return undefined
        lead()
        // Held until close(), a final refusal, or the tab goes away.
        return new Promise<void>((resolve) => {
          releaseLock = resolve
        })
      })
      .catch(() => {
        // AbortError: closed while waiting for the lock.
      })
  }
  // Callbacks never run inside connectNotify: the caller has its client first.
  queueMicrotask(start)

  return {
    get state() {
      return state ?? 'connecting'
    },
    get leader() {
      return leader
    },
    get lastEventId() {
      return lastEventId
    },
    close: shutdown,
  }
}

// Storage can be missing or throw (disabled cookies, private modes, quotas):
// the client then works without it.
function safeStorage(name: 'localStorage' | 'sessionStorage'): Storage | null {
  try {
    return globalThis[name] ?? null
  } catch {
    return null
  }
}

function read(storage: Pick<Storage, 'getItem'> | null, key: string): string | null {
  try {
    return storage?.getItem(key) ?? null
  } catch {
    return null
  }
}

function write(storage: Pick<Storage, 'setItem'> | null, key: string, value: string): void {
  try {
    storage?.setItem(key, value)
  } catch {
    // Full or disabled: the next page load starts live instead of resuming.
  }
}
