// Reads the YAML stream that `kubectl kustomize` prints on stdin and validates
// every object against the Kubernetes API schema of its apiVersion and kind
// (kubernetes-models: the OpenAPI schemas of Kubernetes, compiled). An object
// of a kind it has no schema for fails too. Note: these schemas allow unknown
// fields, so a misspelled optional field passes here; test/kubernetes.test.ts
// reads the promised fields at their paths.
import { text } from 'node:stream/consumers'
import { parseAllDocuments } from 'yaml'

const what = process.argv[2] ?? 'stdin'
const docs = parseAllDocuments(await text(process.stdin))
let failed = 0
let count = 0
for (const doc of docs) {
  if (doc.errors.length > 0) throw new Error(`${what}: ${doc.errors.join('; ')}`)
  const object = doc.toJS()
  if (object === null) continue
  count++
  const { apiVersion, kind } = object
  const name = `${kind} ${object.metadata?.name} (${apiVersion})`
  let Model
  try {
    // `v1` is the core group; others are `<group>/<version>`.
    Model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind]
  } catch {
    console.error(`${what}: ${name}: no schema for this apiVersion and kind`)
    failed++
    continue
  }
  try {
    new Model(object).validate()
    console.log(`${what}: ${name}: valid`)
  } catch (err) {
    console.error(`${what}: ${name}: ${err.message}`)
    failed++
  }
}
if (count === 0) {
  console.error(`${what}: no objects`)
  process.exit(1)
}
process.exit(failed === 0 ? 0 : 1)
