// `npm run demo:screenshot`: docs/demo.png, alice's page after bob has sent
// her a few notifications through the page's send form, with a job of hers
// at 60 %.
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium, type Page } from 'playwright-core'
import { type Demo, startDemo } from './server.js'

const OUT = fileURLToPath(new URL('../docs/demo.png', import.meta.url))
const MESSAGES: [type: string, text: string][] = [
  ['job.finished', 'Nightly export finished: 12,408 rows in 3 min 12 s'],
  ['order.shipped', 'Order A-1042 has shipped and arrives on Thursday'],
  ['comment.liked', 'bob liked your comment on "Release notes 1.4"'],
]

async function signIn(page: Page, url: string, user: string): Promise<void> {
  await page.goto(url)
  await page.fill('#user', user)
  await page.click('#sign-in button[type=submit]')
  await page.waitForSelector('#state[data-state="live"]')
}

async function main(): Promise<void> {
  let demo: Demo | undefined
  let browser: Browser | undefined
  try {
    // The job takes its first 7 steps (0 to 60 %) and then waits for good.
    let steps = 0
    const jobPace = () => (steps++ < 7 ? Promise.resolve() : new Promise<void>(() => {}))
    demo = await startDemo({ port: 0, tokenTtlS: 3600, logLevel: 'warn', jobPace })
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    const viewport = { viewport: { width: 1100, height: 940 }, deviceScaleFactor: 1, colorScheme: 'light' } as const
    const alice = await (await browser.newContext(viewport)).newPage()
    const bob = await (await browser.newContext(viewport)).newPage()
    alice.setDefaultTimeout(15_000)
    bob.setDefaultTimeout(15_000)
    await signIn(alice, demo.url, 'alice')
    await signIn(bob, demo.url, 'bob')

    for (const [type, text] of MESSAGES) {
      await bob.fill('#to', 'alice')
      await bob.selectOption('#type', type)
      await bob.fill('#text', text)
      const [res] = await Promise.all([
        bob.waitForResponse((r) => new URL(r.url()).pathname === '/demo/send'),
        bob.click('#send button[type=submit]'),
      ])
      if (res.status() !== 202) throw new Error(`/demo/send answered ${res.status()}`)
      const { id } = (await res.json()) as { id: string }
      await alice.waitForSelector(`#notifications li[data-id="${id}"]`)
    }
    await alice.click('#start-job')
    await alice.waitForSelector('#jobs li[data-percent="60"]')
    // A draft in alice's form shows what sending looks like.
    await alice.fill('#to', 'bob')
    await alice.selectOption('#type', 'comment.liked')
    await alice.fill('#text', 'Thanks, bob!')
    await alice.locator('#text').blur()
    await alice.waitForSelector('#state[data-state="live"]')
    mkdirSync(dirname(OUT), { recursive: true })
    await alice.screenshot({ path: OUT, type: 'png', animations: 'disabled' })
    process.stdout.write(`wrote ${OUT}\n`)
  } finally {
    await browser?.close()
    await demo?.close()
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`screenshot failed: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(1)
  },
)
