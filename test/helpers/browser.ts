// A real browser for tests: Debian's Chromium driven by playwright-core, and a
// page server on its own origin (http://localhost:<port>), as an app's pages
// would be beside the notify service (http://localhost:<other port>).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { type Browser, type BrowserContext, chromium } from 'playwright-core'
import { listenLoopback } from './listen.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** The flags this machine needs (no sandbox as root, no GPU, no network but loopback). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]

/** Launches Chromium once for a test file; closed at the file's end. */
export async function launchBrowser(t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
  t.teardown(() => browser.close())
  return browser
}

/** A browser context (a separate cookie jar, storage and tabs) whose credential is `token` in an HttpOnly cookie. */
export async function userContext(t: Teardown, browser: Browser, token: string): Promise<BrowserContext> {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  await context.addCookies([
    { name: 'access_token', value: token, domain: 'localhost', path: '/', httpOnly: true, sameSite: 'Strict' },
  ])
  return context
}

/** Answers a request the page server does not serve itself; false: not mine (the page is served). */
export type Route = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>

/** Serves `html` for GET on any path of http://localhost:<port> (and `route`'s answers); returns that origin. */
export async function servePage(t: Teardown, html: string, route?: Route): Promise<string> {
  const server = createServer(async (req, res) => {
    if (route !== undefined && (await route(req, res))) return
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(html)
  })
  return `http://localhost:${await listenLoopback(t, server)}`
}
