'use strict';
/*
 * The happy path: a job enqueued over every transport (h2c, TLS h2, HTTP/1.1,
 * HTTPS/1.1, and curl) lands in Redis exactly as Resque writes it; tokens from
 * `jobgate token` and from our own minting work for every algorithm; health and
 * readiness; the audit line.
 */
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');
const h = require('./lib/harness');

const execFileAsync = promisify(execFile);
let env;

before(async () => {
  env = await h.setupEnvironment();
});

after(async () => {
  if (env) await env.teardown();
});

beforeEach(async () => {
  await env.client.flushall();
});

/* Nested objects, unicode (BMP and astral), escapes, integers and exact binary fractions. */
const ARGS = [
  { user_id: 42, profile: { name: 'Zoë 山田', emoji: '🎉', tags: ['a', 'b'], empty: {}, none: [] } },
  'héllo wörld ✓ \u2028 quote" backslash\\ slash/ newline\n tab\t ctrl\u0001',
  -17,
  9007199254740991,
  1.5,
  -0.25,
  0,
  true,
  false,
  null,
  [[], [{}], [1, [2, [3]]]],
];
const JOB = { class: 'SendWelcomeEmail', args: ARGS };
const EXPECTED_PAYLOAD = `{"class":"SendWelcomeEmail","args":${JSON.stringify(ARGS)}}`;

async function assertStoredExactly(queue, payloads) {
  assert.deepEqual(await env.client.smembers('resque:queues'), [queue]);
  await h.assertQueueHolds(env, queue, payloads);
}

function assertAccepted(res, queue, className) {
  assert.equal(res.status, 202, `expected 202, got ${res.status}: ${res.text}`);
  assert.match(String(res.headers['content-type']), /^application\/json(;|$)/);
  assert.equal(typeof res.body, 'object', res.text);
  assert.match(res.body.id, h.UUID_RE);
  assert.equal(res.body.queue, queue);
  assert.equal(res.body.class, className);
}

for (const [protocol, label, alpn] of [
  ['h2c', 'HTTP/2 cleartext (prior knowledge)', 'h2c'],
  ['h2', 'HTTP/2 over TLS', 'h2'],
  ['http1', 'HTTP/1.1 cleartext', undefined],
  ['https1', 'HTTP/1.1 over TLS', 'http/1.1'],
]) {
  test(`enqueue over ${label}: 202 and a signed Resque payload with the exact arguments in Redis`, async () => {
    const res = await h.enqueue(env, 'mailers', { protocol, token: env.token(), body: JOB });
    assertAccepted(res, 'mailers', 'SendWelcomeEmail');
    if (alpn !== undefined) assert.equal(res.alpn, alpn, 'negotiated protocol');
    if (protocol.startsWith('http')) assert.equal(res.protocol, 'HTTP/1.1');
    await assertStoredExactly('mailers', [EXPECTED_PAYLOAD]);
  });
}

test('job ids are distinct UUIDs and jobs keep their order in the queue', async () => {
  const session = await h.h2Connect(env.gate.base);
  try {
    const token = env.token();
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const res = await h.enqueue(env, 'mailers', { session, token,
        body: { class: 'SendWelcomeEmail', args: [i] } });
      assertAccepted(res, 'mailers', 'SendWelcomeEmail');
      ids.push(res.body.id);
    }
    assert.equal(new Set(ids).size, 5);
    await assertStoredExactly('mailers',
      [0, 1, 2, 3, 4].map((i) => `{"class":"SendWelcomeEmail","args":[${i}]}`));
  } finally {
    session.close();
  }
});

test('decimal fractions reach Redis as the producer wrote them (19.99 stays 19.99)', async () => {
  // A producer writing Resque directly (Ruby, Python, JS) stores 19.99 as "19.99".
  const raw = '{"class":"SendWelcomeEmail","args":[{"price":19.99,"rate":0.1,"pi":3.14159}]}';
  const res = await h.enqueue(env, 'mailers', { token: env.token(), body: raw });
  assertAccepted(res, 'mailers', 'SendWelcomeEmail');
  await assertStoredExactly('mailers', [raw]);
});

test('curl --http2-prior-knowledge, as the README shows, enqueues a job', async () => {
  const token = h.jobgateToken(env.config.path, ['--tenant', 'acme', '--subject', 'developer',
    '--scope', 'tier:standard', '--ttl', '600']);
  const body = '{"class":"SendWelcomeEmail","args":[{"user_id":42}]}';
  const { stdout } = await execFileAsync('curl', ['--http2-prior-knowledge', '-sS',
    '-o', '-', '-w', '\n%{http_version} %{http_code}',
    `${env.gate.base}/v1/queues/mailers/jobs`,
    '-H', `Authorization: Bearer ${token}`,
    '-H', 'Content-Type: application/json',
    '-d', body]);
  const lines = stdout.trim().split('\n');
  assert.equal(lines.pop(), '2 202', `curl said: ${stdout}`);
  const answer = JSON.parse(lines.join('\n'));
  assert.match(answer.id, h.UUID_RE);
  assert.equal(answer.queue, 'mailers');
  await assertStoredExactly('mailers', [body]);
});

test('curl over TLS negotiates h2 and enqueues a job', async () => {
  const body = '{"class":"SendWelcomeEmail","args":["tls"]}';
  const { stdout } = await execFileAsync('curl', ['--http2', '-sS', '--cacert', env.material.certFile,
    '-o', '/dev/null', '-w', '%{http_version} %{http_code}',
    `${env.gate.tlsBase}/v1/queues/mailers/jobs`,
    '-H', `Authorization: Bearer ${env.token()}`,
    '-H', 'Content-Type: application/json',
    '-d', body]);
  assert.equal(stdout.trim(), '2 202');
  await assertStoredExactly('mailers', [body]);
});

test('tokens minted by `jobgate token` work for every key of the config', async () => {
  for (const material of Object.values(env.material.keys)) {
    const args = ['--kid', material.kid, '--tenant', 'acme', '--subject', `cli-${material.alg}`,
      '--scope', 'tier:standard', '--ttl', '300'];
    if (material.privateFile) args.push('--key', material.privateFile);
    const token = h.jobgateToken(env.config.path, args);
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
    assert.equal(header.alg, material.alg);
    assert.equal(header.kid, material.kid);
    const res = await h.enqueue(env, 'mailers', { token,
      body: { class: 'SendWelcomeEmail', args: [material.alg] } });
    assertAccepted(res, 'mailers', 'SendWelcomeEmail');
  }
  assert.equal((await h.queueContents(env.client, 'mailers')).length, 5);
});

test('`jobgate token` defaults: tenant acme, the config\'s first key, and no scope unless asked', async () => {
  const token = h.jobgateToken(env.config.path, ['--scope', 'queue:invoices']);
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  assert.equal(header.kid, env.config.config.auth.keys[0].kid);
  const res = await h.enqueue(env, 'invoices', { token,
    body: { class: 'SendInvoice', args: [{ invoice: 7 }] } });
  assertAccepted(res, 'invoices', 'SendInvoice');
  await assertStoredExactly('invoices', ['{"class":"SendInvoice","args":[{"invoice":7}]}']);

  assert.throws(() => h.jobgateToken(env.config.path, []), /Command failed/,
    'a token without --scope is refused');
});

for (const alg of ['HS256', 'HS384', 'HS512', 'RS256', 'ES256']) {
  test(`our own ${alg} token is accepted`, async () => {
    const token = env.token(alg, { sub: `own-${alg}` });
    const res = await h.enqueue(env, 'mailers', { token,
      body: { class: 'SendWelcomeEmail', args: [alg] } });
    assertAccepted(res, 'mailers', 'SendWelcomeEmail');
    await assertStoredExactly('mailers', [`{"class":"SendWelcomeEmail","args":["${alg}"]}`]);
  });
}

test('the same token twice (served from the token cache) is accepted both times', async () => {
  const token = env.token('ES256');
  for (let i = 0; i < 2; i++) {
    const res = await h.enqueue(env, 'mailers', { token, body: { class: 'SendWelcomeEmail', args: [i] } });
    assertAccepted(res, 'mailers', 'SendWelcomeEmail');
  }
  assert.equal((await h.queueContents(env.client, 'mailers')).length, 2);
});

test('GET /healthz and /readyz answer 200 over h2c, h2, HTTP/1.1 and HTTPS/1.1', async () => {
  for (const protocol of ['h2c', 'http1', 'h2', 'https1']) {
    const health = await h.send(env, protocol, { method: 'GET', path: '/healthz' });
    assert.equal(health.status, 200, `${protocol} /healthz`);
    assert.equal(health.body.status, 'ok');
    const ready = await h.send(env, protocol, { method: 'GET', path: '/readyz' });
    assert.equal(ready.status, 200, `${protocol} /readyz`);
    assert.equal(ready.body.status, 'ready');
  }
  const head = await h.send(env, 'h2c', { method: 'HEAD', path: '/healthz' });
  assert.equal(head.status, 200);
  assert.equal(head.raw.length, 0, 'HEAD answer over HTTP/2 carries no body');
});

/** Sends raw HTTP/1.1 bytes and returns everything the server wrote until it closed. */
function rawHttp1(port, text) {
  return new Promise((resolve, reject) => {
    const socket = require('node:net').connect(port, '127.0.0.1');
    const chunks = [];
    socket.setTimeout(3000, () => socket.destroy(new Error('raw HTTP/1.1 exchange timed out')));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(text);
  });
}

test('HEAD /healthz and /readyz over HTTP/1.1 answer 200 with headers only (RFC 9110 9.3.2)', async () => {
  for (const target of ['/healthz', '/readyz']) {
    // Two requests on one connection: a body after the HEAD answer would be read as the
    // start of the second answer.
    const out = await rawHttp1(env.gate.httpPort,
      `HEAD ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
      `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 200 /);
    const endOfHeaders = out.indexOf('\r\n\r\n') + 4;
    assert.ok(out.slice(endOfHeaders).startsWith('HTTP/1.1 200 '),
      `HEAD ${target} sent a body: ${JSON.stringify(out.slice(endOfHeaders, endOfHeaders + 40))}`);
  }
});

async function waitForLog(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const line = env.gate.logs.find(predicate);
    if (line || Date.now() > deadline) return line;
    await h.sleep(20);
  }
}

test('an accepted job writes one audit line with who, where and what, and never its args', async () => {
  const marker = 'audit-arg-7f3c9e-value';
  const token = env.token('HS256', { sub: 'svc-audit', tenant: 'acme' });
  const res = await h.enqueue(env, 'mailers', { token,
    body: { class: 'SendWelcomeEmail', args: [marker, { nested: marker, email: 'x@example.test' }] } });
  assertAccepted(res, 'mailers', 'SendWelcomeEmail');
  const line = await waitForLog((l) => l.event === 'request' && l.job_id === res.body.id);
  assert.ok(line, `no audit line for job ${res.body.id}; log:\n${env.gate.stderr}`);
  assert.equal(line.tenant, 'acme');
  assert.equal(line.subject, 'svc-audit');
  assert.equal(line.queue, 'mailers');
  assert.equal(line.class, 'SendWelcomeEmail');
  assert.equal(line.status, 202);
  assert.equal(line.method, 'POST');
  assert.equal(line.protocol, 'h2c');
  assert.equal(env.gate.logs.filter((l) => l.job_id === res.body.id).length, 1, 'exactly one line');
  assert.ok(!env.gate.stderr.includes(marker), 'an argument value reached the log');
  assert.ok(!env.gate.stderr.includes('x@example.test'), 'an argument value reached the log');
  for (const l of env.gate.logs) assert.ok(!('unparsed' in l), `not a JSON log line: ${l.unparsed}`);
});

test('the config written for the tests passes `jobgate check-config`', async () => {
  const { stdout } = await execFileAsync(h.jobgateBinary(), ['check-config', '--config', env.config.path]);
  assert.match(stdout, /: ok: queues 3, tiers 3, keys 5$/m);
  assert.ok(fs.existsSync(path.join(env.material.dir, 'cert.pem')));
});
