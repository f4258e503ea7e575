// A real OpenID Connect provider (oidc-provider) for tests, on 127.0.0.1 and a
// free port. A plain node:http server hands each request to the *current*
// Provider, so a test can swap in one with a new signing key (key rotation)
// while the service runs, take the provider down, and count requests by path.
import { once } from 'node:events'
import { createServer, type RequestListener } from 'node:http'
import { APP_CLIENT, makeProvider, memoryAdapter, type Minter, minter, RESOURCES, SERVICE_CLIENT, signingKey } from './oidc-setup.js'
import { closeServer } from './listen.js'

export { type MintOptions, type Minter, RESOURCES, SERVICE_CLIENT } from './oidc-setup.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface TestOidc extends Minter {
  issuer: string
  /** Endpoints as the discovery document names them. */
  jwksUri: string
  introspectionEndpoint: string
  /** Service environment for AUTH_MODE=introspection. */
  introspectionEnv(): Record<string, string>
  /** Service environment for AUTH_MODE=jwt against this provider. */
  jwtEnv(): Record<string, string>
  /** Requests received on a path, e.g. /token/introspection or /jwks. */
  requests(path: string): number
  /** Revokes a token at the revocation endpoint, as the app that holds it. */
  revoke(token: string): Promise<void>
  /** Swaps in a provider signing with a new key; keepOld also publishes the previous ones. Returns the new kid. */
  rotate(opts?: { keepOld?: boolean }): Promise<string>
  /** Same issuer name, a key it never published: tokens a forger could make. */
  impostor(): Promise<Minter>
  /** Answer every request with a status, or delay it; undefined: serve normally. */
  outage(answer: { status: number } | { delayMs: number } | undefined): void
  /** Close the listening socket and every connection (connection refused until start()). */
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startOidc(t: Teardown): Promise<TestOidc> {
  const counts = new Map<string, number>()
  let handler: RequestListener | undefined
  let failure: { status: number } | { delayMs: number } | undefined
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    counts.set(path, (counts.get(path) ?? 0) + 1)
    if (failure !== undefined && 'status' in failure) {
      res.writeHead(failure.status, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: 'temporarily_unavailable' }))
    } else if (failure !== undefined) {
      const timer = setTimeout(() => handler?.(req, res), failure.delayMs)
      res.on('close', () => clearTimeout(timer))
    } else handler?.(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const issuer = `http://127.0.0.1:${port}`

  const adapter = memoryAdapter()
  let keys = [await signingKey()]
  let current = makeProvider(issuer, keys, adapter)
  handler = current.callback()
  const stop = () => closeServer(server)
  t.teardown(stop)
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, string>

  return {
    issuer,
    jwksUri: discovery.jwks_uri as string,
    introspectionEndpoint: discovery.introspection_endpoint as string,
    introspectionEnv: () => ({
      AUTH_MODE: 'introspection',
      INTROSPECTION_URL: discovery.introspection_endpoint as string,
      INTROSPECTION_CLIENT_ID: SERVICE_CLIENT.id,
      INTROSPECTION_CLIENT_SECRET: SERVICE_CLIENT.secret,
    }),
    jwtEnv: () => ({ AUTH_MODE: 'jwt', JWT_JWKS_URL: discovery.jwks_uri as string, JWT_ISSUER: issuer, JWT_AUDIENCE: RESOURCES.jwt }),
    requests: (path) => counts.get(path) ?? 0,
    // Each call goes to the provider current at the time.
    opaqueToken: (sub, o) => minter(current).opaqueToken(sub, o),
    jwtToken: (sub, o) => minter(current).jwtToken(sub, o),
    refreshToken: (sub) => minter(current).refreshToken(sub),
    clientCredentialsToken: () => minter(current).clientCredentialsToken(),
    revoke: async (token) => {
      const res = await fetch(discovery.revocation_endpoint as string, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${APP_CLIENT.id}:${APP_CLIENT.secret}`).toString('base64')}` },
        body: new URLSearchParams({ token }),
      })
      if (res.status !== 200) throw new Error(`revocation answered ${res.status}: ${await res.text()}`)
    },
    rotate: async ({ keepOld = false } = {}) => {
      const key = await signingKey()
      keys = keepOld ? [key, ...keys] : [key]
      // The storage is shared: tokens issued before the swap stay known.
      current = makeProvider(issuer, keys, adapter)
      handler = current.callback()
      return key.kid as string
    },
    impostor: async () => minter(makeProvider(issuer, [await signingKey()], memoryAdapter())),
    outage: (answer) => {
      failure = answer
    },
    stop,
    start: async () => {
      server.listen(port, '127.0.0.1')
      await once(server, 'listening')
    },
  }
}
