// Every setting is documented where operators look: README's configuration
// table and .env.example, both in the schema's order.
import { readdirSync, readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { EnvSchema } from '../src/config.js'

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
