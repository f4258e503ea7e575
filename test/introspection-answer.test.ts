// The pure judge of RFC 7662 answers (src/auth/introspection-answer.ts), for the
// answers a real provider in test/auth-introspection.test.ts does not give:
// other providers' token kinds, bound tokens, broken answers.
import t from 'tap'
import { basicCredentials } from '../src/auth/introspection.js'
import { judgeIntrospection } from '../src/auth/introspection-answer.js'

const NOW = 1_700_000_000_000
const exp = NOW / 1000 + 60
const active = { active: true, sub: 'alice', exp, token_type: 'Bearer' }
const SUB = { userClaim: 'sub' }

t.test('an active bearer token with a user is a principal that expires at exp', async (t) => {
  t.same(judgeIntrospection(active, SUB, NOW), { principal: { userId: 'alice', expiresAt: exp * 1000 } })
  t.same(judgeIntrospection({ ...active, exp: undefined }, SUB, NOW), { principal: { userId: 'alice' } }, 'no exp')
  t.same(judgeIntrospection({ ...active, exp: null }, SUB, NOW), { principal: { userId: 'alice' } }, 'exp: null')
  t.same(judgeIntrospection({ ...active, token_type: 'bearer' }, SUB, NOW), { principal: { userId: 'alice', expiresAt: exp * 1000 } })
  t.same(judgeIntrospection({ ...active, token_use: 'access_token' }, SUB, NOW), { principal: { userId: 'alice', expiresAt: exp * 1000 } })
  t.same(
    judgeIntrospection({ ...active, token_type: undefined, token_use: 'access_token' }, SUB, NOW),
    { principal: { userId: 'alice', expiresAt: exp * 1000 } },
    'ORY Hydra: token_use access_token, no token_type',
  )
  t.same(judgeIntrospection({ ...active, uid: 42 }, { userClaim: 'uid' }, NOW), { principal: { userId: '42', expiresAt: exp * 1000 } })
})

t.test('INTROSPECTION_AUDIENCE: aud must name this service', async (t) => {
  const opts = { userClaim: 'sub', audience: 'https://notify.example' }
  const ok = { principal: { userId: 'alice', expiresAt: exp * 1000 } }
  t.same(judgeIntrospection({ ...active, aud: 'https://notify.example' }, opts, NOW), ok, 'string aud')
  t.same(judgeIntrospection({ ...active, aud: ['x', 'https://notify.example'] }, opts, NOW), ok, 'array aud')
  t.same(judgeIntrospection({ ...active, aud: 'https://other.example' }, opts, NOW), { refused: 'wrong-audience' }, 'other aud')
  t.same(judgeIntrospection({ ...active, aud: ['x'] }, opts, NOW), { refused: 'wrong-audience' }, 'not in the array')
  t.same(judgeIntrospection(active, opts, NOW), { refused: 'wrong-audience' }, 'no aud')
  t.same(judgeIntrospection({ ...active, aud: 'https://other.example' }, SUB, NOW), ok, 'unchecked when unset')
})

t.test('refusals', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['inactive', { active: false }, 'inactive'],
    ['inactive, whatever else it says', { ...active, active: false }, 'inactive'],
    ['exp now', { ...active, exp: NOW / 1000 }, 'expired'],
    ['exp past', { ...active, exp: NOW / 1000 - 1 }, 'expired'],
    ['no token_type (oidc-provider, Spring: a refresh token)', { ...active, token_type: undefined }, 'untyped'],
    ['token_type null', { ...active, token_type: null }, 'untyped'],
    ['token_type refresh_token', { ...active, token_type: 'refresh_token' }, 'not-access-token'],
    ['DPoP-bound', { ...active, token_type: 'DPoP', cnf: { jkt: 'x' } }, 'sender-constrained'],
    ['DPoP without cnf', { ...active, token_type: 'dpop' }, 'sender-constrained'],
    ['token_type not a string', { ...active, token_type: ['Bearer'] }, 'not-access-token'],
    ['token_type empty', { ...active, token_type: '' }, 'not-access-token'],
    ['token_type N_A', { ...active, token_type: 'N_A' }, 'not-access-token'],
    ['ORY Hydra refresh token', { ...active, token_use: 'refresh_token' }, 'not-access-token'],
    ['certificate-bound (RFC 8705)', { ...active, cnf: { 'x5t#S256': 'abc' } }, 'sender-constrained'],
    ['no sub (client credentials)', { ...active, sub: undefined }, 'no-user'],
    ['empty sub', { ...active, sub: '' }, 'no-user'],
    ['object sub', { ...active, sub: { id: 1 } }, 'no-user'],
  ]
  for (const [name, body, why] of cases) t.same(judgeIntrospection(body, SUB, NOW), { refused: why }, name)
})

// Answer shapes as each provider documents or builds them (README, "Which
// answers are access tokens", says where each comes from). Times are moved to NOW.
const iat = NOW / 1000 - 60
const ok = (userId: string) => ({ principal: { userId, expiresAt: exp * 1000 } })
const ACCEPT = { userClaim: 'sub', untypedTokens: 'accept' } as const
const REFUSE = { userClaim: 'sub', untypedTokens: 'refuse' } as const

t.test('Keycloak: typ tells access from refresh, offline and ID tokens', async (t) => {
  // keycloak-user mailing list, 2017-01: an access token's answer, typ only.
  const access = {
    jti: '7e0a2c4b-9725-432b-a0fd-594f21686108', exp, nbf: 0, iat,
    iss: 'http://localhost:8080/auth/realms/nkadali', aud: 'proxy', sub: 'e89175d5-94fd-453a-8abb-9953d59d04cf',
    typ: 'Bearer', azp: 'proxy', auth_time: iat, session_state: 'c05ea410', preferred_username: 'jason', acr: '0',
    'allowed-origins': [], realm_access: { roles: ['uma_authorization'] }, client_id: 'proxy', username: 'jason', active: true,
  }
  const user = 'e89175d5-94fd-453a-8abb-9953d59d04cf'
  for (const opts of [SUB, ACCEPT]) {
    t.same(judgeIntrospection(access, opts, NOW), ok(user), 'older Keycloak: typ Bearer, no token_type')
    // Newer Keycloak (keycloak/keycloak#21919) copies typ into token_type.
    t.same(judgeIntrospection({ ...access, token_type: 'Bearer' }, opts, NOW), ok(user), 'newer Keycloak: token_type too')
    for (const typ of ['Refresh', 'Offline', 'ID', 'Logout']) {
      t.same(judgeIntrospection({ ...access, typ }, opts, NOW), { refused: 'not-access-token' }, `typ ${typ}`)
      t.same(judgeIntrospection({ ...access, typ, token_type: typ }, opts, NOW), { refused: 'not-access-token' }, `typ and token_type ${typ}`)
    }
    const dpop = { ...access, typ: 'DPoP', token_type: 'DPoP', cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } }
    t.same(judgeIntrospection(dpop, opts, NOW), { refused: 'sender-constrained' }, 'a DPoP-bound access token')
  }
})

t.test('Okta: token_type Bearer for refresh tokens too; INTROSPECTION_AUDIENCE or INTROSPECTION_USER_CLAIM=uid tells them apart', async (t) => {
  // developer.okta.com, OpenID Connect & OAuth 2.0 API, /introspect: the two success examples.
  const access = {
    active: true, token_type: 'Bearer', scope: 'openid profile', client_id: 'a9VpZDRCeFh3Nkk2VdYa',
    username: 'john.doe@example.com', exp, iat, sub: 'john.doe@example.com', aud: 'api://default',
    iss: 'https://example.okta.com/oauth2/default', jti: 'AT.7P4KlczBYVcWLkxduEuKeZfeiNYkZIC9uGJ28Cc-YaI', uid: '00uid4BxXw6I6TV4m0g3',
  }
  const refresh = {
    active: true, token_type: 'Bearer', scope: 'openid profile email', client_id: 'a9VpZDRCeFh3Nkk2VdYa',
    username: 'john.doe@example.com', exp, sub: 'john.doe@example.com', device_id: 'q4SZgrA9sOeHkfst5uaa',
  }
  const aud = { userClaim: 'sub', audience: 'api://default' }
  t.same(judgeIntrospection(access, aud, NOW), ok('john.doe@example.com'), 'access token, audience checked')
  t.same(judgeIntrospection(refresh, aud, NOW), { refused: 'wrong-audience' }, 'refresh token: no aud')
  const uid = { userClaim: 'uid' }
  t.same(judgeIntrospection(access, uid, NOW), ok('00uid4BxXw6I6TV4m0g3'), 'access token, user from uid')
  t.same(judgeIntrospection(refresh, uid, NOW), { refused: 'no-user' }, 'refresh token: no uid')
  // The limitation the README states: nothing in the answer names the kind.
  t.same(judgeIntrospection(refresh, SUB, NOW), ok('john.doe@example.com'), 'with neither setting, an Okta refresh token is admitted')
})

t.test('Ory Hydra: token_use wins over token_type, which says Bearer for both', async (t) => {
  // oauth2/handler.go, introspectOAuth2Token: AccessTokenType "Bearer", TokenUse access_token | refresh_token.
  const access = {
    active: true, aud: [], client_id: 'web-app', exp, ext: {}, iat, iss: 'https://hydra.example/', nbf: iat,
    scope: 'openid offline', sub: 'alice', token_type: 'Bearer', token_use: 'access_token',
  }
  for (const opts of [SUB, ACCEPT]) {
    t.same(judgeIntrospection(access, opts, NOW), ok('alice'), 'access token')
    t.same(judgeIntrospection({ ...access, token_use: 'refresh_token' }, opts, NOW), { refused: 'not-access-token' }, 'refresh token')
    // Hydra 1.x before token_use (ory/hydra#1762, #1934): the kind in token_type.
    const { token_use: _, ...old } = access
    t.same(judgeIntrospection({ ...old, token_type: 'access_token' }, opts, NOW), ok('alice'), '1.x access token')
    t.same(judgeIntrospection({ ...old, token_type: 'refresh_token' }, opts, NOW), { refused: 'not-access-token' }, '1.x refresh token')
  }
})

t.test('Spring Authorization Server: token_type only for access tokens', async (t) => {
  // OAuth2TokenIntrospectionAuthenticationProvider: the token's claims, client_id, iat, exp,
  // and token_type only for an OAuth2AccessToken.
  const access = {
    active: true, sub: 'alice', aud: ['web-app'], nbf: iat, scope: ['openid', 'notify'], iss: 'https://spring.example',
    exp, iat, jti: 'c6a5b4f0', client_id: 'web-app', token_type: 'Bearer',
  }
  const refresh = { active: true, client_id: 'web-app', iat, exp }
  const id = { active: true, sub: 'alice', aud: ['web-app'], azp: 'web-app', auth_time: iat, iss: 'https://spring.example', exp, iat, nonce: 'n-0S6', sid: 's1', client_id: 'web-app' }
  t.same(judgeIntrospection(access, SUB, NOW), ok('alice'), 'access token')
  t.same(judgeIntrospection({ ...access, token_type: 'DPoP', cnf: { jkt: 'x' } }, SUB, NOW), { refused: 'sender-constrained' }, 'DPoP-bound')
  t.same(judgeIntrospection(refresh, REFUSE, NOW), { refused: 'untyped' }, 'refresh token')
  t.same(judgeIntrospection(id, REFUSE, NOW), { refused: 'untyped' }, 'ID token')
  // Why the README says to keep refuse here.
  t.same(judgeIntrospection(id, ACCEPT, NOW), ok('alice'), 'with accept, an ID token would be admitted')
})

t.test('node-oidc-provider: no token_type for refresh tokens', async (t) => {
  // lib/actions/introspection.js: token_type unless the token is a RefreshToken (the real one runs in auth-introspection tests).
  const access = {
    active: true, sub: 'alice', client_id: 'web-app', exp, iat, iss: 'http://127.0.0.1:4000', scope: 'notify',
    aud: 'urn:notify:introspected', token_type: 'Bearer',
  }
  const { token_type: _, aud: __, ...refresh } = { ...access, scope: 'openid offline_access', sid: 's1' }
  t.same(judgeIntrospection(access, SUB, NOW), ok('alice'), 'access token')
  t.same(judgeIntrospection(refresh, SUB, NOW), { refused: 'untyped' }, 'refresh token, default setting')
  t.same(judgeIntrospection({ ...access, token_type: 'DPoP', cnf: { jkt: 'x' } }, SUB, NOW), { refused: 'sender-constrained' }, 'DPoP-bound')
  // Before 2018 (panva/node-oidc-provider#189) it named the kind in token_type.
  t.same(judgeIntrospection({ ...refresh, token_type: 'refresh_token' }, ACCEPT, NOW), { refused: 'not-access-token' }, 'old refresh token')
})

t.test('Zitadel: Bearer access tokens; anything else is inactive', async (t) => {
  // internal/api/oidc/introspect.go: only verifyAccessToken; TokenType oidc.BearerToken.
  const access = {
    active: true, scope: 'openid profile', client_id: '276281', token_type: 'Bearer', exp, iat, nbf: iat,
    aud: ['276281', '276280'], iss: 'https://zitadel.example', jti: 'V2_2766', sub: '2766110', username: 'alice@example.com',
  }
  t.same(judgeIntrospection(access, SUB, NOW), ok('2766110'), 'access token')
  t.same(judgeIntrospection({ active: false }, SUB, NOW), { refused: 'inactive' }, 'a refresh token: active false')
})

t.test('Authentik: no kind at all; the setting decides', async (t) => {
  // providers/oauth2/views/introspection.py: the stored ID token's claims, then active, scope, client_id,
  // for an AccessToken and a RefreshToken alike.
  const answer = {
    iss: 'https://authentik.example/application/o/notify/', sub: 'f3d0c5a1', aud: 'notify-web', exp, iat, auth_time: iat,
    acr: 'goauthentik.io/providers/oauth2/default', nonce: 'n-0S6', at_hash: 'aWs8', email: 'alice@example.com',
    active: true, scope: 'openid email offline_access', client_id: 'notify-web',
  }
  t.same(judgeIntrospection(answer, SUB, NOW), { refused: 'untyped' }, 'default: refused, access and refresh alike')
  t.same(judgeIntrospection(answer, ACCEPT, NOW), ok('f3d0c5a1'), 'accept: admitted, access and refresh alike')
})

t.test('INTROSPECTION_UNTYPED_TOKENS only decides answers that name no kind', async (t) => {
  const untyped = { active: true, sub: 'alice', exp }
  t.same(judgeIntrospection(untyped, SUB, NOW), { refused: 'untyped' }, 'unset: refuse')
  t.same(judgeIntrospection(untyped, REFUSE, NOW), { refused: 'untyped' }, 'refuse')
  t.same(judgeIntrospection(untyped, ACCEPT, NOW), ok('alice'), 'accept')
  t.same(judgeIntrospection({ ...untyped, token_type: null, typ: null, token_use: null }, ACCEPT, NOW), ok('alice'), 'null members name nothing')
  // Accepting the unnamed never lets the named through, nor skips the other checks.
  const named: [string, Record<string, unknown>, string][] = [
    ['token_type refresh_token', { token_type: 'refresh_token' }, 'not-access-token'],
    ['token_use refresh_token', { token_use: 'refresh_token' }, 'not-access-token'],
    ['typ Refresh', { typ: 'Refresh' }, 'not-access-token'],
    ['typ ID', { typ: 'ID' }, 'not-access-token'],
    ['token_type unknown', { token_type: 'mac' }, 'not-access-token'],
    ['DPoP', { token_type: 'DPoP' }, 'sender-constrained'],
    ['cnf', { cnf: { 'x5t#S256': 'abc' } }, 'sender-constrained'],
  ]
  for (const [name, extra, why] of named) t.same(judgeIntrospection({ ...untyped, ...extra }, ACCEPT, NOW), { refused: why }, name)
  t.same(judgeIntrospection({ ...untyped, sub: undefined }, ACCEPT, NOW), { refused: 'no-user' }, 'still needs a user')
  t.same(judgeIntrospection(untyped, { ...ACCEPT, audience: 'urn:notify' }, NOW), { refused: 'wrong-audience' }, 'still checks aud')
})

t.test('the most cautious member wins, whatever order the members come in', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    ['token_use access, typ Refresh', { token_use: 'access_token', typ: 'Refresh' }],
    ['typ Bearer, token_type refresh_token', { typ: 'Bearer', token_type: 'refresh_token' }],
    ['token_type Bearer, token_use refresh_token', { token_type: 'Bearer', token_use: 'refresh_token' }],
    ['token_type Bearer, typ Offline', { typ: 'Offline', token_type: 'Bearer' }],
  ]
  for (const [name, kinds] of cases) {
    t.same(judgeIntrospection({ active: true, sub: 'alice', exp, ...kinds }, ACCEPT, NOW), { refused: 'not-access-token' }, name)
  }
  t.same(
    judgeIntrospection({ active: true, sub: 'alice', exp, token_use: 'access_token', typ: 'bearer', token_type: 'BEARER' }, SUB, NOW),
    ok('alice'),
    'all three agree, any case',
  )
})

t.test('answers that break RFC 7662 throw (the provider is at fault: 503)', async (t) => {
  const broken: [string, unknown][] = [
    ['no active', { sub: 'alice' }],
    ['active as a string', { ...active, active: 'true' }],
    ['an array', [active]],
    ['null', null],
    ['a string', 'active'],
    ['exp as a string', { ...active, exp: String(exp) }],
  ]
  for (const [name, body] of broken) t.throws(() => judgeIntrospection(body, SUB, NOW), name)
})

t.test('client_secret_basic form-encodes id and secret before base64 (RFC 6749 section 2.3.1)', async (t) => {
  const decoded = (h: string) => Buffer.from(h.replace(/^Basic /, ''), 'base64').toString('utf8')
  t.equal(decoded(basicCredentials('notify', 'plain')), 'notify:plain')
  t.equal(decoded(basicCredentials('my app', 'a:b+c/d%e&f=g h')), 'my+app:a%3Ab%2Bc%2Fd%25e%26f%3Dg+h')
  t.equal(decoded(basicCredentials('id', 'é!*')), 'id:%C3%A9%21*')
})
