// Shared by the tests of the deploy files (kubernetes, compose-scaled): YAML
// read by PyYAML (docker-compose's own YAML library: Debian's docker-compose
// brings python3-yaml to /usr/bin/python3; the project has no YAML parser of
// its own), a tool that must be there in CI and may be absent on a developer's
// machine, and the check that an environment holds only real settings of the
// service.
import { spawnSync } from 'node:child_process'
import { EnvSchema } from '../../src/config.js'

/** The first python3 that has PyYAML: the one on PATH (pyenv, a venv) may not. */
const PYTHON = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import yaml'], { stdio: 'ignore' }).status === 0)

/** Every document of a YAML stream, as JSON values. Throws with python's error. */
export function yamlDocs(text: string): unknown[] {
  if (PYTHON === undefined) throw new Error('no python3 with PyYAML')
  const r = spawnSync(PYTHON, ['-c', 'import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)'], {
    input: text,
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`python3 yaml: ${r.error?.message ?? r.stderr}`)
  return JSON.parse(r.stdout) as unknown[]
}

/** Runs `cmd args` and returns its stdout; throws with its stderr when it fails. */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, ...opts })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`)
  return r.stdout
}

/** Why a test of `tool` cannot run here (`tool args` fails), or false when it can. */
export function missing(tool: string, args: string[]): string | false {
  return spawnSync(tool, args, { stdio: 'ignore' }).status === 0 ? false : `${tool} is not installed (.ci/run installs it)`
}
export const noYaml = (): string | false => PYTHON === undefined && 'no python3 with PyYAML (.ci/run installs docker-compose, which brings it)'

/** Names in `env` that are no setting of src/config.ts (and src/redis-config.ts, spread into it). */
export function unknownSettings(env: Record<string, unknown>): string[] {
  return Object.keys(env).filter((k) => !Object.hasOwn(EnvSchema.properties, k))
}
