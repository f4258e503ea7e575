// CPU per auth check, by HTTP client: the global fetch (what the auth adapters
// used first), undici's request API (what they used next) and
// src/auth/http-client.ts (undici's dispatch API, what they use now). The
// auth upstream runs in a child process, so the figure is the client's alone.
// Usage: npm run bench:auth-client -- [checks=20000] [rounds=3]
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { Agent } from 'undici'
import { type AuthHttp, createAuthHttp } from '../src/auth/http-client.js'
import { AUTH_IN_FLIGHT } from '../src/auth/slots.js'
import { startUpstream } from './lib.js'
import { median } from './load/stats.js'

const CHECKS = Number(process.argv[2] ?? 20_000)
const ROUNDS = Number(process.argv[3] ?? 3)
const TIMEOUT_MS = 5000

async function viaFetch(url: string, i: number): Promise<unknown> {
  const res = await fetch(url, {
    headers: { authorization: `Bearer user-u${i}`, accept: 'application/json' },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  })
  const chunks: Uint8Array[] = []
  for await (const chunk of res.body ?? []) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

let agent: Agent | undefined
async function viaRequest(url: string, i: number): Promise<unknown> {
  agent ??= new Agent({ connections: AUTH_IN_FLIGHT })
  const { origin, pathname } = new URL(url)
  const res = await agent.request({
    origin,
    path: pathname,
    method: 'GET',
    headers: { authorization: `Bearer user-u${i}`, accept: 'application/json' },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  })
  const chunks: Buffer[] = []
  for await (const chunk of res.body as AsyncIterable<Buffer>) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

let http: AuthHttp | undefined
async function viaAuthHttp(url: string, i: number): Promise<unknown> {
  http ??= createAuthHttp(url, AUTH_IN_FLIGHT)
  const res = await http.send({ method: 'GET', headers: { authorization: `Bearer user-u${i}`, accept: 'application/json' } },
    AbortSignal.timeout(TIMEOUT_MS))
  try {
    return await res.json()
  } finally {
    await res.discard()
  }
}

/** Client CPU (user + system) per check, in µs, with AUTH_IN_FLIGHT checks in flight. */
async function measure(check: (url: string, i: number) => Promise<unknown>, url: string): Promise<number> {
  let next = 0
  const lane = async () => {
    while (next < CHECKS) {
      const i = next++
      const body = (await check(url, i)) as { user_id?: string }
      if (body.user_id !== `u${i}`) throw new Error(`check ${i} answered ${JSON.stringify(body)}`)
    }
  }
  const cpu0 = process.cpuUsage()
  await Promise.all(Array.from({ length: AUTH_IN_FLIGHT }, lane))
  const cpu = process.cpuUsage(cpu0)
  return (cpu.user + cpu.system) / CHECKS
}

async function main(): Promise<void> {
  const child = fork(new URL(import.meta.url).pathname, ['--upstream'], { execArgv: process.execArgv })
  const [url] = (await once(child, 'message')) as [string]
  try {
    const fetchUs: number[] = []
    const requestUs: number[] = []
    const dispatchUs: number[] = []
    await measure(viaFetch, url) // warm up all three
    await measure(viaRequest, url)
    await measure(viaAuthHttp, url)
    for (let round = 0; round < ROUNDS; round++) {
      fetchUs.push(await measure(viaFetch, url))
      requestUs.push(await measure(viaRequest, url))
      dispatchUs.push(await measure(viaAuthHttp, url))
    }
    const summary = (runs: number[]) => ({ medianUs: +median(runs).toFixed(1), runsUs: runs.map((x) => +x.toFixed(1)) })
    console.log(JSON.stringify({
      checks: CHECKS,
      rounds: ROUNDS,
      inFlight: AUTH_IN_FLIGHT,
      cpuPerCheck: { fetch: summary(fetchUs), 'undici.request': summary(requestUs), 'service (undici.dispatch)': summary(dispatchUs) },
      ratio: { fetch: +(median(fetchUs) / median(dispatchUs)).toFixed(2), 'undici.request': +(median(requestUs) / median(dispatchUs)).toFixed(2) },
    }))
  } finally {
    child.kill()
    await http?.close()
    await agent?.close()
  }
}

if (process.argv.includes('--upstream')) {
  startUpstream().then((url) => process.send?.(url))
  // startUpstream unrefs its server; stay until the parent kills us.
  setInterval(() => {}, 60_000)
} else {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
