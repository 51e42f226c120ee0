'use strict';
/*
 * The request body: unknown classes (422), strict JSON (400 malformed-json), the job
 * shape (400 invalid-job), media type (415) and size (413, per queue and at the HTTP
 * layer). No error answer or log line ever echoes a value from the request.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const GLOBAL_LIMIT = 262144;
const REPORTS_LIMIT = 65536; // config/example.json's per-queue limit for "reports"
const SECRET = 's3cr3t-value-123';
let env;
let token;

before(async () => {
  env = await h.setupEnvironment({ overrides: { limits: { max_body_bytes: GLOBAL_LIMIT } } });
  token = env.token('HS256', { scope: 'tier:standard tier:critical' });
  const res = await h.enqueue(env, 'mailers', { token, body: { class: 'SendWelcomeEmail', args: ['seed'] } });
  assert.equal(res.status, 202, res.text);
  assert.equal(env.config.config.queues.reports.max_body_bytes, REPORTS_LIMIT);
});

after(async () => {
  if (env) await env.teardown();
});

/** POSTs body to queue with the good token; checks status, type and that Redis is unchanged. */
function rejectBody(status, kind, body, { queue = 'mailers', headers, protocol = 'h2c' } = {}) {
  return h.assertRejected(env, status, kind,
    () => h.enqueue(env, queue, { protocol, headers: headers || h.jobHeaders(token), body }));
}

function assertNoEcho(res) {
  assert.ok(!res.text.includes(SECRET), `the answer echoes a request value: ${res.text}`);
  assert.ok(!res.text.includes('s3cr3t'), `the answer echoes a request value: ${res.text}`);
}

test('a class that is not allowed on the queue: 422 unknown-class', async () => {
  for (const className of ['DropAllTables', 'SendInvoice', 'BuildReport', 'sendWelcomeEmail',
    'SendWelcomeEmail ', 'SendWelcomeEmail::X', '']) {
    await rejectBody(422, 'unknown-class', { class: className, args: [] });
  }
});

test('malformed JSON: syntax errors: 400 malformed-json', async () => {
  for (const body of ['{', '{"class":"SendWelcomeEmail","args":[1,]}', "{'class':'SendWelcomeEmail','args':[]}",
    '{"class":"SendWelcomeEmail","args":[NaN]}', '{"class":"SendWelcomeEmail","args":[01]}',
    '{"class":"SendWelcomeEmail",args:[]}', '{"class":"SendWelcomeEmail","args":["a\tb"]}',
    '{"class":"SendWelcomeEmail","args":[1e]}', '{"class":"SendWelcomeEmail","args":["\\x41"]}']) {
    const res = await rejectBody(400, 'malformed-json', body);
    assertNoEcho(res);
  }
});

test('malformed JSON: duplicate keys, at the top and nested: 400 malformed-json', async () => {
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","class":"SendWelcomeEmail","args":[]}');
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","args":[],"args":[1]}');
  await rejectBody(400, 'malformed-json',
    `{"class":"SendWelcomeEmail","args":[{"user":1,"deep":{"k":"${SECRET}","k":"${SECRET}"}}]}`);
  // Keys equal after unescaping are duplicates too.
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","args":[{"a":1,"\\u0061":2}]}');
});

test('malformed JSON: invalid UTF-8 bytes: 400 malformed-json', async () => {
  const prefix = Buffer.from('{"class":"SendWelcomeEmail","args":["');
  const suffix = Buffer.from('"]}');
  for (const bad of [[0xff], [0xc3], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80], [0x80], [0xf0, 0x9f, 0x98]]) {
    await rejectBody(400, 'malformed-json', Buffer.concat([prefix, Buffer.from(bad), suffix]));
  }
  // In a key, too.
  await rejectBody(400, 'malformed-json', Buffer.concat([Buffer.from('{"class":"SendWelcomeEmail","args":[{"'),
    Buffer.from([0xfe]), Buffer.from('":1}]}')]));
});

test('malformed JSON: lone surrogate escapes and NUL: 400 malformed-json', async () => {
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","args":["\\ud800"]}');
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","args":["\\udc00x"]}');
  await rejectBody(400, 'malformed-json', '{"class":"SendWelcomeEmail","args":["a\\u0000b"]}');
});

test('malformed JSON: data after the value: 400 malformed-json', async () => {
  for (const body of ['{"class":"SendWelcomeEmail","args":[]} x', '{"class":"SendWelcomeEmail","args":[]}{}',
    '{"class":"SendWelcomeEmail","args":[]}]', '{"class":"SendWelcomeEmail","args":[]}\u0000']) {
    await rejectBody(400, 'malformed-json', body);
  }
  // Trailing whitespace is still JSON.
  const res = await h.enqueue(env, 'mailers', { token, body: '{"class":"SendWelcomeEmail","args":["ws"]} \n\t' });
  assert.equal(res.status, 202, res.text);
});

test('malformed JSON: nesting far too deep: 400 malformed-json', async () => {
  const depth = 10000;
  await rejectBody(400, 'malformed-json',
    `{"class":"SendWelcomeEmail","args":${'['.repeat(depth)}${']'.repeat(depth)}}`);
});

test('not a job: a JSON array or an empty body: 400 invalid-job', async () => {
  await rejectBody(400, 'invalid-job', '[]');
  await rejectBody(400, 'invalid-job', '[{"class":"SendWelcomeEmail","args":[]}]');
  const res = await rejectBody(400, 'invalid-job', '');
  assert.equal(res.body.status, 400);
});

test('not a job: a top-level JSON scalar (valid RFC 8259 JSON) is invalid-job, not malformed-json', async () => {
  for (const body of ['"SendWelcomeEmail"', '42', 'null', 'true']) {
    await rejectBody(400, 'invalid-job', body);
  }
});

test('invalid job shapes: 400 invalid-job', async () => {
  for (const body of [
    { class: 42, args: [] },
    { class: null, args: [] },
    { class: ['SendWelcomeEmail'], args: [] },
    { class: 'SendWelcomeEmail', args: {} },
    { class: 'SendWelcomeEmail', args: 'x' },
    { class: 'SendWelcomeEmail', args: null },
    { class: 'SendWelcomeEmail' },
    { args: [] },
    {},
    { class: 'SendWelcomeEmail', args: [], queue: 'invoices' },
    { class: 'SendWelcomeEmail', args: [], Class: 'X' },
    { class: 'SendWelcomeEmail', args: [], [SECRET]: SECRET },
  ]) {
    const res = await rejectBody(400, 'invalid-job', body);
    assertNoEcho(res);
  }
});

test('no problem answer echoes a value from the request', async () => {
  const answers = [];
  // 422: the class itself is the distinctive value; args carry it too.
  answers.push(await rejectBody(422, 'unknown-class', { class: SECRET, args: [SECRET, { k: SECRET }] }));
  answers.push(await rejectBody(422, 'unknown-class', { class: 'S3cr3tValue123', args: [SECRET] }));
  // 400s
  answers.push(await rejectBody(400, 'malformed-json', `{"class":"SendWelcomeEmail","args":["${SECRET}"`));
  answers.push(await rejectBody(400, 'malformed-json', `{"class":"SendWelcomeEmail","args":["${SECRET}"]} ${SECRET}`));
  answers.push(await rejectBody(400, 'malformed-json', `{"class":"SendWelcomeEmail","args":[${SECRET}]}`));
  answers.push(await rejectBody(400, 'invalid-job', { class: 'SendWelcomeEmail', args: SECRET }));
  answers.push(await rejectBody(400, 'invalid-job', { class: { name: SECRET }, args: [SECRET] }));
  // 415, 401, 403, 404 with the value in the body
  const body = { class: 'SendWelcomeEmail', args: [SECRET] };
  answers.push(await rejectBody(415, 'unsupported-media-type', body,
    { headers: h.jobHeaders(token, { 'content-type': `text/${SECRET}` }) }));
  answers.push(await rejectBody(401, 'invalid-token', body, { headers: h.jobHeaders(SECRET) }));
  answers.push(await rejectBody(403, 'insufficient-scope', body,
    { headers: h.jobHeaders(env.token('HS256', { scope: 'tier:bulk', sub: 'subject-n0-echo' })) }));
  answers.push(await rejectBody(404, 'unknown-queue', body, { queue: 'queue-n0-echo' }));
  for (const res of answers) {
    assertNoEcho(res);
    assert.ok(!res.text.includes('n0-echo'), `the answer echoes the subject or queue name: ${res.text}`);
  }
  // Nor does any log line carry an argument value (subjects and paths are logged on purpose).
  await h.sleep(50);
  const leaked = env.gate.stderr.split('\n').filter((line) => line.includes('s3cr3t'));
  assert.deepEqual(leaked, [], 'log lines echo a request value');
});

test('Content-Type missing or not JSON: 415 unsupported-media-type', async () => {
  const body = { class: 'SendWelcomeEmail', args: [1] };
  for (const type of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'application/jsonx',
    'application/json-patch+json', 'application/json; charset=latin1', 'application/json; charset="latin1"',
    'application/json; charset="utf-8', 'application/json; charset=utf-8x', 'application/json; version=2',
    'application/json, text/plain', 'text/json', 'multipart/form-data']) {
    await rejectBody(415, 'unsupported-media-type', body, { headers: h.jobHeaders(token, { 'content-type': type }) });
    await rejectBody(415, 'unsupported-media-type', body,
      { protocol: 'http1', headers: h.jobHeaders(token, { 'content-type': type }) });
  }
});

test('two Content-Type headers: 415 unsupported-media-type, even when the first is JSON', async () => {
  const body = { class: 'SendWelcomeEmail', args: [1] };
  for (const types of [['application/json', 'text/plain'], ['application/json', 'application/json']]) {
    const res = await rejectBody(415, 'unsupported-media-type', body,
      { protocol: 'http1', headers: h.jobHeaders(token, { 'content-type': types }) });
    assert.match(res.body.detail, /one Content-Type/);
  }
});

test('Content-Type application/json with charset utf-8 is accepted, in any case and RFC 9110 spelling', async () => {
  for (const type of ['application/json; charset=utf-8', 'application/json;charset=UTF-8', 'Application/JSON',
    'application/json ;charset="UTF-8"', 'application/json;', 'application/json; ; charset=utf-8 ']) {
    const before = (await h.queueContents(env.client, 'mailers')).length;
    const res = await h.enqueue(env, 'mailers', { headers: h.jobHeaders(token, { 'content-type': type }),
      body: { class: 'SendWelcomeEmail', args: [type] } });
    assert.equal(res.status, 202, `${type}: ${res.text}`);
    assert.equal((await h.queueContents(env.client, 'mailers')).length, before + 1);
  }
});

/* A job of exactly size bytes, padded with strings short enough for the schema limits. */
function jobOfSize(className, size) {
  const pieces = Math.ceil(size / 50000);
  const skeleton = JSON.stringify({ class: className, args: Array(pieces).fill('') });
  const padding = size - skeleton.length;
  const args = Array.from({ length: pieces }, (_, i) =>
    'x'.repeat(Math.floor(padding / pieces) + (i < padding % pieces ? 1 : 0)));
  const body = JSON.stringify({ class: className, args });
  assert.equal(Buffer.byteLength(body), size);
  return body;
}

test('a body over the queue\'s own limit but under the global one: 413 payload-too-large', async () => {
  const reportsToken = env.token('HS256', { scope: 'tier:bulk' });
  for (const size of [REPORTS_LIMIT + 1, 100000, GLOBAL_LIMIT - 10]) {
    for (const protocol of ['h2c', 'http1', 'h2']) {
      await rejectBody(413, 'payload-too-large', jobOfSize('BuildReport', size),
        { queue: 'reports', protocol, headers: h.jobHeaders(reportsToken) });
    }
  }
  // At the limit exactly it is accepted.
  const res = await h.enqueue(env, 'reports', { token: reportsToken, body: jobOfSize('BuildReport', REPORTS_LIMIT) });
  assert.equal(res.status, 202, res.text);
  // And the same size is fine on a queue without its own limit.
  const mailers = await h.enqueue(env, 'mailers', { token, body: jobOfSize('SendWelcomeEmail', 100000) });
  assert.equal(mailers.status, 202, mailers.text);
});

test('a body over the global limit is refused by the HTTP layer (HTTP/1.1: 413)', async () => {
  const body = jobOfSize('SendWelcomeEmail', GLOBAL_LIMIT + 1000);
  for (const protocol of ['http1', 'https1']) {
    const before = await env.snapshot();
    const res = await h.enqueue(env, 'mailers', { protocol, token, body });
    assert.equal(res.status, 413, `${protocol}: ${res.status} ${res.text}`);
    assert.deepEqual(await env.snapshot(), before);
  }
});

test('a chunked HTTP/1.1 body over the global limit: 413, nothing written', async () => {
  const before = await env.snapshot();
  const res = await new Promise((resolve, reject) => {
    const req = require('node:http').request({ host: '127.0.0.1', port: env.gate.httpPort, method: 'POST',
      path: '/v1/queues/mailers/jobs', headers: h.jobHeaders(token), agent: false }, (r) => {
      r.resume();
      r.on('end', () => resolve(r));
    });
    req.on('error', reject);
    const body = jobOfSize('SendWelcomeEmail', GLOBAL_LIMIT * 2);
    for (let i = 0; i < body.length; i += 16384) req.write(body.slice(i, i + 16384));
    req.end();
  }).catch((error) => ({ statusCode: null, error }));
  if (res.statusCode !== null) assert.equal(res.statusCode, 413);
  else assert.match(String(res.error.code), /ECONNRESET|EPIPE/);
  assert.deepEqual(await env.snapshot(), before);
});

test('a body over the global limit over HTTP/2: 413 or a stream reset, nothing written', async () => {
  const body = jobOfSize('SendWelcomeEmail', GLOBAL_LIMIT + 1000);
  for (const protocol of ['h2c', 'h2']) {
    for (const withLength of [false, true]) {
      const before = await env.snapshot();
      const headers = h.jobHeaders(token, withLength ? { 'content-length': String(Buffer.byteLength(body)) } : {});
      const res = await h.enqueue(env, 'mailers', { protocol, headers, body });
      if (res.status === null) assert.ok(res.reset > 0, `${protocol}: no answer and no reset code`);
      else assert.equal(res.status, 413, `${protocol}: ${res.status} ${res.text}`);
      assert.deepEqual(await env.snapshot(), before);
    }
  }
  // The server is still fine afterwards.
  const ok = await h.enqueue(env, 'mailers', { token, body: { class: 'SendWelcomeEmail', args: ['after'] } });
  assert.equal(ok.status, 202);
});
