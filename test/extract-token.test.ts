// Token extraction (src/auth/extract.ts): where a token is taken from and what
// is refused before any verifier sees it. Pure function, no sockets.
import t, { type Test } from 'tap'
import { extractToken, MAX_TOKEN_LENGTH, type TokenCarrier } from '../src/auth/extract.js'
import { type ClientError, isClientError } from '../src/errors.js'

const defaults = { cookieName: 'access_token', allowQueryToken: false }
const withQuery = { ...defaults, allowQueryToken: true }

function carrier(parts: Partial<TokenCarrier>): TokenCarrier {
  return { authorization: undefined, cookies: undefined, query: undefined, ...parts }
}

/** Runs extractToken and returns the catalog error it throws (fails the test if it does not throw one). */
function refusal(req: TokenCarrier, opts = defaults): ClientError {
  try {
    const got = extractToken(req, opts)
    throw new Error(`expected a refusal, got a ${got.token.length}-character token from the ${got.source}`)
  } catch (err) {
    if (!isClientError(err)) throw err
    return err
  }
}

function assertMalformed(t: Test, err: ClientError, why: RegExp): void {
  t.equal(err.statusCode, 401)
  t.equal(err.code, 'NOTIFY_TOKEN_MALFORMED')
  t.match(err.message, why)
  t.equal(err.headers?.['www-authenticate'], 'Bearer realm="notify", error="invalid_request"')
}

t.test('the Bearer scheme is case-insensitive', async (t) => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
    t.same(extractToken(carrier({ authorization: `${scheme} abc.def-ghi_~+/=` }), defaults), {
      token: 'abc.def-ghi_~+/=',
      source: 'header',
    }, scheme)
  }
  t.same(extractToken(carrier({ authorization: 'Bearer    spaced' }), defaults).token, 'spaced', 'several spaces after the scheme')
  t.same(extractToken(carrier({ authorization: 'Bearer tail  ' }), defaults).token, 'tail', 'trailing blanks ignored')
})

t.test('the header beats the cookie and the query', async (t) => {
  const req = carrier({
    authorization: 'Bearer from-header',
    cookies: { access_token: 'from-cookie' },
    query: { access_token: 'from-query' },
  })
  t.same(extractToken(req, withQuery), { token: 'from-header', source: 'header' })
})

t.test('a present but malformed header decides, even with a good cookie', async (t) => {
  const err = refusal(carrier({ authorization: 'Basic dXNlcjpwYXNz', cookies: { access_token: 'good-cookie' } }))
  assertMalformed(t, err, /scheme must be Bearer/)
})

t.test('the cookie is used when there is no header, and beats the query', async (t) => {
  const req = carrier({ cookies: { access_token: 'from-cookie', other: 'x' }, query: { access_token: 'from-query' } })
  t.same(extractToken(req, withQuery), { token: 'from-cookie', source: 'cookie' })
})

t.test('the configured cookie name is the one read', async (t) => {
  const opts = { ...defaults, cookieName: 'sid' }
  t.same(extractToken(carrier({ cookies: { sid: 'mine' } }), opts), { token: 'mine', source: 'cookie' })
  const err = refusal(carrier({ cookies: { access_token: 'not-this-one' } }), opts)
  t.equal(err.code, 'NOTIFY_TOKEN_MISSING')
})

t.test('an empty cookie counts as no cookie', async (t) => {
  t.equal(refusal(carrier({ cookies: { access_token: '' } })).code, 'NOTIFY_TOKEN_MISSING')
  t.same(extractToken(carrier({ cookies: { access_token: '' }, query: { access_token: 'q' } }), withQuery), {
    token: 'q',
    source: 'query',
  })
})

t.test('nothing at all: 401 missing, with a bare Bearer challenge', async (t) => {
  const err = refusal(carrier({}))
  t.equal(err.statusCode, 401)
  t.equal(err.code, 'NOTIFY_TOKEN_MISSING')
  // RFC 6750 section 3.1: no error code when the request had no credentials.
  t.equal(err.headers?.['www-authenticate'], 'Bearer realm="notify"')
  t.equal(refusal(carrier({ cookies: {}, query: {} })).code, 'NOTIFY_TOKEN_MISSING')
})

t.test('the query token is refused unless allowQueryToken', async (t) => {
  const req = carrier({ query: { access_token: 'from-query' } })
  t.equal(refusal(req).code, 'NOTIFY_TOKEN_MISSING', 'ignored by default')
  t.same(extractToken(req, withQuery), { token: 'from-query', source: 'query' }, 'accepted when enabled')
  t.equal(refusal(carrier({ query: { token: 'other-name' } }), withQuery).code, 'NOTIFY_TOKEN_MISSING', 'only access_token is read')
  t.equal(refusal(carrier({ query: { access_token: '' } }), withQuery).code, 'NOTIFY_TOKEN_MISSING', 'empty is absent')
})

t.test('a repeated access_token is malformed', async (t) => {
  const err = refusal(carrier({ query: { access_token: ['one', 'two'] } }), withQuery)
  assertMalformed(t, err, /more than once/)
})

t.test('a non-Bearer scheme is malformed', async (t) => {
  for (const header of ['Basic dXNlcjpwYXNz', 'Token abc', 'Bearerabc', 'Bearer', 'abc', 'Bearer\tabc', 'MAC Bearer abc']) {
    assertMalformed(t, refusal(carrier({ authorization: header })), /scheme must be Bearer/)
  }
})

t.test('a header with more than one token is malformed', async (t) => {
  t.equal(refusal(carrier({ authorization: 'Bearer one two' })).code, 'NOTIFY_TOKEN_MALFORMED')
})

t.test('an empty token is malformed', async (t) => {
  assertMalformed(t, refusal(carrier({ authorization: 'Bearer ' })), /empty token/)
  assertMalformed(t, refusal(carrier({ authorization: '' })), /scheme must be Bearer/)
})

t.test('a token longer than MAX_TOKEN_LENGTH is malformed, from every source', async (t) => {
  const longest = 'a'.repeat(MAX_TOKEN_LENGTH)
  t.equal(extractToken(carrier({ authorization: `Bearer ${longest}` }), defaults).token, longest, 'the limit itself is fine')
  const tooLong = `${longest}a`
  assertMalformed(t, refusal(carrier({ authorization: `Bearer ${tooLong}` })), /longer than 8192/)
  assertMalformed(t, refusal(carrier({ cookies: { access_token: tooLong } })), /longer than 8192/)
  assertMalformed(t, refusal(carrier({ query: { access_token: tooLong } }), withQuery), /longer than 8192/)
})

t.test('characters a bearer token cannot have are malformed', async (t) => {
  // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "=" padding only.
  for (const bad of ['a=b', 'a"b', 'a,b', 'a;b', 'a$b', 'é', 'a\u0000b', 'a%20b', '=abc', 'tok\\en']) {
    const fromCookie = refusal(carrier({ cookies: { access_token: bad } }))
    assertMalformed(t, fromCookie, /characters/)
    const fromQuery = refusal(carrier({ query: { access_token: bad } }), withQuery)
    t.equal(fromQuery.code, 'NOTIFY_TOKEN_MALFORMED', `query ${JSON.stringify(bad)}`)
  }
  t.equal(refusal(carrier({ cookies: { access_token: 'a b' } })).code, 'NOTIFY_TOKEN_MALFORMED', 'space in a cookie')
  t.equal(extractToken(carrier({ cookies: { access_token: 'abc==' } }), defaults).token, 'abc==', 'trailing padding is fine')
})

t.test('the error message never echoes the token', async (t) => {
  const secret = 'S3cr3t$token'
  for (const err of [
    refusal(carrier({ authorization: `Bearer ${secret}` })),
    refusal(carrier({ cookies: { access_token: secret } })),
    refusal(carrier({ authorization: `Basic ${secret}` })),
  ]) {
    t.notMatch(err.message, 'S3cr3t')
  }
})
