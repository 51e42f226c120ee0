'use strict';
/*
 * Authentication: every way a bearer token can be wrong gets a 401 with
 * WWW-Authenticate: Bearer error="invalid_token", the invalid-token problem type, and
 * no change in Redis. A request with no bearer credentials at all gets 401
 * missing-token with a bare Bearer challenge (RFC 6750 section 3.1).
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./lib/harness');

let env;
const JOB = { class: 'SendWelcomeEmail', args: [{ user_id: 42 }] };

before(async () => {
  env = await h.setupEnvironment();
  // Something already in Redis, so "unchanged" is not the trivial empty-equals-empty.
  const res = await h.enqueue(env, 'mailers', { token: env.token(), body: JOB });
  assert.equal(res.status, 202, res.text);
});

after(async () => {
  if (env) await env.teardown();
});

function assertBearerChallenge(res, error) {
  const challenge = String(res.headers['www-authenticate'] || '');
  assert.match(challenge, /^Bearer\b/, `WWW-Authenticate: ${challenge}`);
  assert.ok(challenge.includes(`error="${error}"`), `WWW-Authenticate: ${challenge}`);
}

/** Sends the job with these request headers and checks the whole 401 answer. */
async function assertUnauthorized(headers, { protocol = 'h2c', queue = 'mailers' } = {}) {
  const res = await h.assertRejected(env, 401, 'invalid-token',
    () => h.enqueue(env, queue, { protocol, headers, body: JOB }));
  assertBearerChallenge(res, 'invalid_token');
  return res;
}

/** The 401 for a request that carries no bearer credentials: a challenge without an error. */
async function assertMissing(headers, { protocol = 'h2c' } = {}) {
  const res = await h.assertRejected(env, 401, 'missing-token',
    () => h.enqueue(env, 'mailers', { protocol, headers, body: JOB }));
  const challenge = String(res.headers['www-authenticate'] || '');
  assert.equal(challenge, 'Bearer realm="jobgate"');
  return res;
}

const bearer = (token) => h.jobHeaders(token);
const keys = () => env.material.keys;
const secret = (alg) => keys()[alg].secret;

test('the control: a good token is accepted', async () => {
  const res = await h.enqueue(env, 'mailers', { token: env.token(), body: { class: 'SendWelcomeEmail', args: [] } });
  assert.equal(res.status, 202, res.text);
});

test('no Authorization header: 401 missing-token over HTTP/2 and HTTP/1.1', async () => {
  await assertMissing(h.jobHeaders(undefined));
  await assertMissing(h.jobHeaders(undefined), { protocol: 'http1' });
});

test('a scheme other than Bearer, or Bearer with no token: 401 missing-token', async () => {
  const token = env.token();
  await assertMissing(h.jobHeaders(undefined, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }));
  await assertMissing(h.jobHeaders(undefined, { authorization: `Token ${token}` }));
  await assertMissing(h.jobHeaders(undefined, { authorization: token }));
  await assertMissing(h.jobHeaders(undefined, { authorization: 'Bearer ' }));
});

test('alg "none" (unsigned, with and without a kid): 401', async () => {
  for (const header of [{ alg: 'none', typ: 'JWT' }, { alg: 'none', kid: keys().HS256.kid },
    { alg: 'None', kid: keys().HS256.kid }]) {
    const token = h.mint(h.claims(), { header, alg: 'none' });
    await assertUnauthorized(bearer(token));
    // An unsigned token with a signature of the right key glued on is no better.
    const [head, body] = token.split('.');
    const mac = crypto.createHmac('sha256', secret('HS256')).update(`${head}.${body}`).digest('base64url');
    await assertUnauthorized(bearer(`${head}.${body}.${mac}`));
  }
});

test('algorithm confusion: HS256 keyed with the RSA public key PEM under the RS256 kid: 401', async () => {
  const rs = keys().RS256;
  for (const pem of [rs.publicPem, rs.publicPem.trim(), Buffer.from(rs.publicPem)]) {
    const token = h.mint(h.claims(), { alg: 'HS256', kid: rs.kid, key: pem });
    await assertUnauthorized(bearer(token));
  }
});

test('a token whose alg differs from its key\'s (RS256 signature under the ES256 kid): 401', async () => {
  const token = h.mint(h.claims(), { alg: 'RS256', kid: keys().ES256.kid, key: keys().RS256.privateKey });
  await assertUnauthorized(bearer(token));
  // And the HMAC family: HS512 claimed for the HS256 key, signed with that key.
  const hs = h.mint(h.claims(), { alg: 'HS512', kid: keys().HS256.kid, key: secret('HS256') });
  await assertUnauthorized(bearer(hs));
});

test('an ES256 signature in DER form instead of JWA R||S: 401', async () => {
  const header = { alg: 'ES256', typ: 'JWT', kid: keys().ES256.kid };
  const input = `${h.b64url(JSON.stringify(header))}.${h.b64url(JSON.stringify(h.claims()))}`;
  const der = crypto.sign('sha256', Buffer.from(input), keys().ES256.privateKey);
  await assertUnauthorized(bearer(`${input}.${der.toString('base64url')}`));
});

test('signed by a different RSA key under the right kid: 401', async () => {
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  await assertUnauthorized(bearer(h.mint(h.claims(), { alg: 'RS256', kid: keys().RS256.kid, key: other })));
});

test('expired (beyond the 30 s leeway): 401', async () => {
  const now = h.nowSeconds();
  await assertUnauthorized(bearer(env.token('HS256', { iat: now - 600, exp: now - 120 })));
  await assertUnauthorized(bearer(env.token('ES256', { iat: now - 600, exp: now - 31 - 5 })));
});

test('expired only within the leeway: accepted', async () => {
  const now = h.nowSeconds();
  const res = await h.enqueue(env, 'mailers', { token: env.token('HS256', { iat: now - 600, exp: now - 10 }),
    body: { class: 'SendWelcomeEmail', args: ['leeway'] } });
  assert.equal(res.status, 202, res.text);
});

test('exp missing, or not a number: 401', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { exp: undefined })));
  await assertUnauthorized(bearer(env.token('RS256', { exp: undefined })));
  await assertUnauthorized(bearer(env.token('HS256', { exp: String(h.nowSeconds() + 600) })));
});

test('not yet valid: nbf in the future beyond the leeway: 401', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { nbf: h.nowSeconds() + 120 })));
});

test('issued in the future (iat beyond the leeway): 401', async () => {
  await assertUnauthorized(bearer(env.token('HS384', { iat: h.nowSeconds() + 120 })));
});

test('wrong issuer, or none: 401', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { iss: 'https://evil.example.test' })));
  await assertUnauthorized(bearer(env.token('HS256', { iss: `${h.ISSUER}/` })));
  await assertUnauthorized(bearer(env.token('HS256', { iss: undefined })));
});

test('wrong audience, or none: 401; an audience array that names us is accepted', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { aud: 'someone-else' })));
  await assertUnauthorized(bearer(env.token('HS256', { aud: ['someone-else', 'another'] })));
  await assertUnauthorized(bearer(env.token('HS256', { aud: undefined })));
  const res = await h.enqueue(env, 'mailers', { token: env.token('HS256', { aud: ['other', h.AUDIENCE] }),
    body: { class: 'SendWelcomeEmail', args: ['aud-array'] } });
  assert.equal(res.status, 202, res.text);
});

test('unknown kid: 401', async () => {
  await assertUnauthorized(bearer(h.mint(h.claims(), { alg: 'HS256', kid: 'no-such-kid', key: secret('HS256') })));
  await assertUnauthorized(bearer(h.mint(h.claims(), { alg: 'HS256', kid: 'dev-hs256', key: secret('HS256') })));
});

test('missing kid (even with the right key\'s signature): 401', async () => {
  await assertUnauthorized(bearer(h.mint(h.claims(), { alg: 'HS256', key: secret('HS256') })));
  await assertUnauthorized(bearer(h.mint(h.claims(), { alg: 'ES256', key: keys().ES256.privateKey })));
});

test('tampered payload (signature no longer matches): 401', async () => {
  for (const alg of ['HS256', 'RS256', 'ES256']) {
    const token = env.token(alg, { tenant: 'acme', scope: 'tier:bulk' });
    const [head, , signature] = token.split('.');
    const forged = h.b64url(JSON.stringify(h.claims({ tenant: 'acme', scope: 'tier:standard tier:critical' })));
    await assertUnauthorized(bearer(`${head}.${forged}.${signature}`));
  }
  // A flipped bit in the signature itself.
  const token = env.token('HS256');
  const sig = Buffer.from(token.split('.')[2], 'base64url');
  sig[0] ^= 1;
  await assertUnauthorized(bearer(`${token.split('.').slice(0, 2).join('.')}.${sig.toString('base64url')}`));
});

test('garbage tokens: 401', async () => {
  const good = env.token();
  for (const token of ['garbage', 'a.b.c', '...', `${good}.extra`, good.split('.').slice(0, 2).join('.'),
    `${good}=`, good.replace(/\./g, '!'), 'e30.e30.', '\u00e9t\u00e9', 'x'.repeat(9000)]) {
    await assertUnauthorized(bearer(token));
  }
});

test('a token with both "scope" and "scp", or a non-integer exp: 401', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { scp: ['tier:standard'] })));
  await assertUnauthorized(bearer(env.token('HS256', { exp: h.nowSeconds() + 600.5 })));
});

test('a token without tenant or subject: 401', async () => {
  await assertUnauthorized(bearer(env.token('HS256', { tenant: undefined })));
  await assertUnauthorized(bearer(env.token('HS256', { sub: undefined })));
});

test('a rejected token is rejected again (no caching of failures into success)', async () => {
  const expired = env.token('HS256', { iat: h.nowSeconds() - 600, exp: h.nowSeconds() - 120 });
  await assertUnauthorized(bearer(expired));
  await assertUnauthorized(bearer(expired));
});

test('a 401 over TLS h2 and HTTPS/1.1 carries the same challenge', async () => {
  await assertMissing(h.jobHeaders(undefined), { protocol: 'h2' });
  await assertUnauthorized(bearer('garbage'), { protocol: 'https1' });
});
