// Every setting is documented where operators look: README's configuration
// table and .env.example, both in the schema's order.
import { readFileSync } from 'node:fs'
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
