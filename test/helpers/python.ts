// Python (python3 with requests) as a real non-Node client: a script in a child
// process that reports by printing one JSON line per step.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Test } from 'tap'

export interface PythonChild {
  /** Waits for the n-th line printed (1-based), parsed; rejects if python exits first. */
  line(n: number): Promise<Record<string, unknown>>
  /** Writes to python's stdin. */
  write(text: string): void
  /** Resolves with the exit code. */
  exited: Promise<number | null>
  stderr(): string
}

function hasRequests(): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = spawn('python3', ['-c', 'import requests'], { stdio: 'ignore' })
    probe.once('error', () => resolve(false))
    probe.once('exit', (code) => resolve(code === 0))
  })
}

/** A test that needs python3 with requests: skipped without it, except in CI, where that fails. */
export async function requestsTest(t: Test, name: string, opts: { timeout: number }, fn: (t: Test) => Promise<void>): Promise<void> {
  if (await hasRequests()) t.test(name, opts, fn)
  else if (process.env.CI) t.fail('python3 with requests not found: CI must install it; .ci/run installs the Debian package python3-requests')
  else t.test(name, { skip: 'python3 with requests not found; to run this test: sudo apt-get install -y python3-requests' }, () => {})
}

export function runPython(t: Test, script: string, args: string[]): PythonChild {
  const child = spawn('python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => child.kill())
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  const lines: Record<string, unknown>[] = []
  let partial = ''
  let closed = false
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of [...waiters]) w()
  }
  child.stdout.on('data', (d: Buffer) => {
    partial += d
    for (let i = partial.indexOf('\n'); i >= 0; i = partial.indexOf('\n')) {
      lines.push(JSON.parse(partial.slice(0, i)) as Record<string, unknown>)
      partial = partial.slice(i + 1)
    }
    wake()
  })
  const exited = once(child, 'close').then(([code]) => code as number | null)
  child.once('close', () => {
    closed = true
    wake()
  })
  return {
    line: (n) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (lines.length >= n) {
            waiters.delete(check)
            resolve(lines[n - 1] as Record<string, unknown>)
          } else if (closed) {
            waiters.delete(check)
            reject(new Error(`python exited before line ${n}: ${stderr}`))
          }
        }
        waiters.add(check)
        check()
      }),
    write: (text) => child.stdin.write(text),
    exited,
    stderr: () => stderr,
  }
}
