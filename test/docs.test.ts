// Every setting is documented where operators look: README's configuration
// table and .env.example, both in the schema's order. README denies no feature
// the service has.
import { readdirSync, readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp } from '../src/app.js'
import { EnvSchema, loadConfig } from '../src/config.js'

const keys = Object.keys(EnvSchema.properties)
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')

function positions(t: Test, where: string, find: (key: string) => number): void {
  let last = -1
  for (const key of keys) {
    const at = find(key)
    t.ok(at >= 0, `${key} is in ${where}`)
    if (at >= 0) t.ok(at > last, `${key} follows the schema's order in ${where}`)
    last = Math.max(last, at)
  }
}

t.test('README configuration table lists every variable', async (t) => {
  positions(t, 'README', (key) => readme.indexOf(`\n| \`${key}\` |`))
})

t.test('.env.example lists every variable', async (t) => {
  positions(t, '.env.example', (key) => {
    const m = new RegExp(`^(# )?${key}=`, 'm').exec(example)
    return m === null ? -1 : m.index
  })
})

t.test("README's client helper table lists every option of NotifyOptions", async (t) => {
  const source = readFileSync(new URL('../src/client/notify-client.ts', import.meta.url), 'utf8')
  const body = /export interface NotifyOptions<T = unknown> \{\n([\s\S]*?)\n\}/.exec(source)?.[1] ?? ''
  const options = [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1] as string)
  t.ok(options.length >= 10, `options found in the source (${options.join(', ')})`)
  const section = readme.slice(readme.indexOf('### The client helper'), readme.indexOf('### Plain `EventSource`'))
  const rows = [...section.matchAll(/^\| `(\w+)/gm)].map((m) => m[1])
  t.same(rows, options, 'one row per option, in the declaration order')
})

t.test("README's layout names every source file", async (t) => {
  const files = (readdirSync(new URL('../src', import.meta.url), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.split('\\').join('/'))
  t.ok(files.length > 20, `${files.length} source files found`)
  const missing = files.filter((f) => !new RegExp(`^${f.replace(/[.]/g, '\\.')}\\s`, 'm').test(readme))
  t.same(missing, [], 'each src/ file has its line in the layout')
})

// A sentence saying a feature is missing must not outlive the feature: "not
// exported: there is no metrics endpoint yet" stood in the README for long
// after /metrics exported the drop counter (issue 14, item 7). Each denial the
// README may make is listed here with a check, asked of the service itself,
// that what it denies is still missing; a "not yet" (or "no ... yet", "yet to
// be", "not implemented", TODO) that is not one of them fails on its own, so a
// new one comes with its check.

/** The service, built once without listening, to be asked what it serves. */
let service: Promise<FastifyInstance> | undefined
function served(): Promise<FastifyInstance> {
  service ??= (async () => {
    const config = loadConfig({ AUTH_MODE: 'upstream', AUTH_UPSTREAM_URL: 'http://127.0.0.1:9/', LOG_LEVEL: 'silent' })
    const app = await buildApp(config)
    t.teardown(() => app.close())
    return app
  })()
  return service
}

async function metricsText(): Promise<string | undefined> {
  const res = await (await served()).inject({ method: 'GET', url: '/metrics' })
  return res.statusCode === 200 ? res.body : undefined
}

interface Denial {
  /** The denial, matched against each sentence of README. */
  says: RegExp
  /** What it says is missing. */
  feature: string
  /** True once the service has it: then the sentence is false. */
  exists: () => Promise<boolean>
}

const DENIALS: readonly Denial[] = [
  {
    says: /\bno (?:`?\/metrics`? |metrics )(?:endpoint|route)\b|\bno metrics\b/i,
    feature: 'GET /metrics',
    exists: async () => (await metricsText()) !== undefined,
  },
  {
    says: /\bdrop\w*\b[^.]*\bnot exported\b|\bnot exported\b[^.]*\bdrop/i,
    feature: 'the drop counter on /metrics (notify_events_dropped_total)',
    exists: async () => (await metricsText())?.includes('notify_events_dropped_total{reason=') === true,
  },
]

/** "Not yet" and its kin: a feature promised for later. */
const LATER = /\b(?:not|no|never|nothing)\b(?:\W+\w+){0,6}?\W+yet\b|\byet to be\b|\bnot (?:yet )?implemented\b|\bcoming soon\b|\bTODO\b/i

/** README's sentences and table cells, whitespace collapsed. */
const sentences = readme.split(/(?<=[.!?|])\s+|\n\s*\n/).map((x) => x.replace(/\s+/g, ' ').trim()).filter((x) => x !== '')

t.test('README denies no feature the service has', async (t) => {
  for (const denial of DENIALS) {
    const saying = sentences.filter((x) => denial.says.test(x))
    if (saying.length === 0) continue
    t.notOk(await denial.exists(), `README says "${saying[0]}", but the service has ${denial.feature}`, { saying })
  }
})

t.test('every "not yet" in README is a listed denial, with its check', async (t) => {
  const unlisted = sentences.filter((x) => LATER.test(x) && !DENIALS.some((d) => d.says.test(x)))
  t.same(unlisted, [], 'add each to DENIALS (test/docs.test.ts) with a check that the feature is still missing, or reword it')
})
