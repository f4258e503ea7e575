// The part of oidc-provider (v9, shipped without types) that test/helpers/oidc.ts
// uses. Names and shapes follow node_modules/oidc-provider/lib.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http'

  export interface Client {
    readonly clientId: string
  }

  export interface ResourceServerInfo {
    scope: string
    audience?: string
    accessTokenFormat?: 'opaque' | 'jwt'
    accessTokenTTL?: number
    jwt?: { sign?: { alg?: string; kid?: string } }
  }

  export class ResourceServer {
    constructor(identifier: string, info: ResourceServerInfo)
    identifier(): string
  }

  export interface TokenInit {
    client: Client
    accountId?: string
    scope?: string
    resourceServer?: ResourceServer
    /** Lifetime in seconds from now. */
    expiresIn?: number
    /** Explicit issue and expiry times, epoch seconds. */
    iat?: number
    exp?: number
  }

  export interface Token {
    /** Stores the token (opaque) or signs it (JWT) and resolves to its value. */
    save(): Promise<string>
    destroy(): Promise<void>
  }

  export interface TokenModel {
    new (init: TokenInit): Token
    find(value: string): Promise<Token | undefined>
  }

  export class Provider {
    constructor(issuer: string, configuration?: Record<string, unknown>)
    readonly issuer: string
    callback(): (req: IncomingMessage, res: ServerResponse) => void
    readonly Client: { find(id: string): Promise<Client | undefined> }
    readonly AccessToken: TokenModel
    readonly RefreshToken: TokenModel
    readonly ClientCredentials: TokenModel
    readonly ResourceServer: typeof ResourceServer
  }

  export default Provider
}
