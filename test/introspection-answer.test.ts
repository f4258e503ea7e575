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
    ['DPoP-bound', { ...active, token_type: 'DPoP', cnf: { jkt: 'x' } }, 'not-access-token'],
    ['token_type not a string', { ...active, token_type: ['Bearer'] }, 'not-access-token'],
    ['ORY Hydra refresh token', { ...active, token_use: 'refresh_token' }, 'not-access-token'],
    ['certificate-bound (RFC 8705)', { ...active, cnf: { 'x5t#S256': 'abc' } }, 'sender-constrained'],
    ['no sub (client credentials)', { ...active, sub: undefined }, 'no-user'],
    ['empty sub', { ...active, sub: '' }, 'no-user'],
    ['object sub', { ...active, sub: { id: 1 } }, 'no-user'],
  ]
  for (const [name, body, why] of cases) t.same(judgeIntrospection(body, SUB, NOW), { refused: why }, name)
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
