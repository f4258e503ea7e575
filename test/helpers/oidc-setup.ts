// How the test OpenID Connect provider is set up: its clients, resource
// servers, signing keys and token storage, and minting tokens through its own
// models (so its introspection endpoint and JWKS know them as they would know
// tokens from a login). test/helpers/oidc.ts runs it.
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import { type Client, Provider, type ResourceServerInfo } from 'oidc-provider'

/** This service's own client at the provider; the secret needs form-encoding in HTTP Basic. */
export const SERVICE_CLIENT = { id: 'notify-service', secret: 'n0t1fy s3cret:+/%&=' }
/** The browser app the tokens are issued to (it may revoke its own tokens). */
export const APP_CLIENT = { id: 'web-app', secret: 'web-app-secret-for-tests' }
/** Resource indicators (RFC 8707): the audience of the tokens issued for them. */
export const RESOURCES = { jwt: 'urn:notify', opaque: 'urn:notify:introspected', other: 'urn:billing' } as const

const SIGNED: ResourceServerInfo['jwt'] = { sign: { alg: 'RS256' } }
const RESOURCE_SERVERS: Record<string, ResourceServerInfo> = {
  [RESOURCES.jwt]: { scope: 'notify', accessTokenFormat: 'jwt', jwt: SIGNED },
  [RESOURCES.opaque]: { scope: 'notify', accessTokenFormat: 'opaque' },
  [RESOURCES.other]: { scope: 'billing', accessTokenFormat: 'jwt', jwt: SIGNED },
}

export interface MintOptions {
  /** Seconds the token lives from now (default 300); the provider rounds exp down to a second. */
  lifetimeS?: number
  /** An explicit expiry, epoch seconds (in the past for an expired token). */
  exp?: number
  resource?: string
  /** JWTs: the signing key, by kid (default: the provider picks its first key). */
  kid?: string
}

export interface Minter {
  /** An opaque access token, to be introspected. */
  opaqueToken(sub: string, opts?: MintOptions): Promise<string>
  /** A JWT access token (typ at+jwt) signed with a key of the provider's JWKS. */
  jwtToken(sub: string, opts?: MintOptions): Promise<string>
  refreshToken(sub: string): Promise<string>
  /** A client-credentials token: active, but for no user. */
  clientCredentialsToken(): Promise<string>
}

let kids = 0

export async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  return { ...(await exportJWK(privateKey)), kid: `k${++kids}-${Date.now()}`, alg: 'RS256', use: 'sig' }
}

type Stored = Record<string, unknown>

/**
 * Token storage for oidc-provider, one per test provider and shared by the
 * providers that replace it on rotation, as a database would be. Entries never
 * expire here: the provider checks `exp` itself, as it would after a restart.
 */
export function memoryAdapter(): (model: string) => Record<string, (...args: never[]) => Promise<unknown>> {
  const store = new Map<string, Stored>()
  return (model) => {
    const key = (id: string) => `${model}:${id}`
    return {
      upsert: async (id: string, payload: Stored) => void store.set(key(id), payload),
      find: async (id: string) => store.get(key(id)),
      findByUid: async () => undefined,
      findByUserCode: async () => undefined,
      consume: async (id: string) => void Object.assign(store.get(key(id)) ?? {}, { consumed: Math.floor(Date.now() / 1000) }),
      destroy: async (id: string) => void store.delete(key(id)),
      revokeByGrantId: async (grantId: string) => {
        for (const [k, v] of store) if (v.grantId === grantId) store.delete(k)
      },
    }
  }
}

export function makeProvider(issuer: string, keys: JWK[], adapter: ReturnType<typeof memoryAdapter>): Provider {
  return new Provider(issuer, {
    adapter,
    clients: [
      // A resource server only introspects: no grants of its own.
      { client_id: SERVICE_CLIENT.id, client_secret: SERVICE_CLIENT.secret, grant_types: [], response_types: [], redirect_uris: [] },
      {
        client_id: APP_CLIENT.id,
        client_secret: APP_CLIENT.secret,
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        redirect_uris: ['https://app.example.com/callback'],
      },
    ],
    jwks: { keys },
    ttl: { AccessToken: 300, RefreshToken: 86_400, ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // The service's client may introspect every token; any other only its own.
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: Client, token: { clientId: string }) =>
          client.clientId === SERVICE_CLIENT.id || client.clientId === token.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: Client, token: { clientId: string }) => client.clientId === token.clientId,
      },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
          const info = RESOURCE_SERVERS[indicator]
          if (info === undefined) throw new Error(`unknown resource ${indicator}`)
          return info
        },
      },
    },
  })
}

export function minter(provider: Provider): Minter {
  const app = async () => (await provider.Client.find(APP_CLIENT.id)) as Client
  const times = (o: MintOptions) => (o.exp !== undefined ? { iat: o.exp - 60, exp: o.exp } : { expiresIn: o.lifetimeS ?? 300 })
  const access = async (sub: string | undefined, fallback: string, o: MintOptions, Model = provider.AccessToken) => {
    const resource = o.resource ?? fallback
    const info = RESOURCE_SERVERS[resource] as ResourceServerInfo
    const rs = new provider.ResourceServer(resource, o.kid === undefined ? info : { ...info, jwt: { sign: { alg: 'RS256', kid: o.kid } } })
    return new Model({ client: await app(), accountId: sub, scope: info.scope, resourceServer: rs, ...times(o) }).save()
  }
  return {
    opaqueToken: (sub, o = {}) => access(sub, RESOURCES.opaque, o),
    jwtToken: (sub, o = {}) => access(sub, RESOURCES.jwt, o),
    refreshToken: async (sub) =>
      new provider.RefreshToken({ client: await app(), accountId: sub, scope: 'openid offline_access' }).save(),
    clientCredentialsToken: () => access(undefined, RESOURCES.opaque, {}, provider.ClientCredentials),
  }
}
