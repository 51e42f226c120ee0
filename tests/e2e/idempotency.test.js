'use strict';
/*
 * Idempotency-Key: a retry with the same key and body is answered with the first
 * answer (same id, Idempotent-Replayed: true) and writes nothing; the same key with
 * another request is 422 idempotency-key-reused; keys are per tenant; malformed keys
 * are 400; a quoted key is the same key; failed requests store nothing; concurrent
 * requests with one key write one job; a batch is replayed whole. The answers live in
 * Redis at <ns>:jobgate:idempotency:<hex sha256(tenant NUL key)>.
 */
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const l = require('./lib/limits');

const WINDOW_SECONDS = 120;
const METERED = { perSecond: 0.1, burst: 1000 }; // the TAT moves by 1e7 us a job

let env;

before(async () => {
  env = await h.setupEnvironment({ overrides: {
    idempotency: { window_seconds: WINDOW_SECONDS },
    tenants: { metered: { jobs_per_second: METERED.perSecond, burst: METERED.burst } },
    queues: {
      alerts: { tier: 'standard', classes: ['SendWelcomeEmail'], tenants: ['*'] },
      capped: { tier: 'standard', classes: ['SendWelcomeEmail'], tenants: ['*'], max_depth: 1 },
    },
  } });
});

after(async () => {
  if (env) await env.teardown();
});

beforeEach(async () => {
  await env.client.flushall();
});

/** A keyed enqueue of a raw body (so that the bytes are exactly the same each time). */
function keyed(key, body, { tenant = 'acme', queue = 'mailers', protocol = 'h2c', session } = {}) {
  const headers = h.jobHeaders(l.tenantToken(env, tenant), key === undefined ? {} : { 'idempotency-key': key });
  return h.enqueue(env, queue, { protocol, headers, body, session });
}

const raw = (tag) => JSON.stringify(l.job(tag));

function assertFresh(res) {
  assert.equal(res.status, 202, `${res.status} ${res.text}`);
  assert.match(res.body.id, h.UUID_RE);
  assert.equal(res.headers['idempotent-replayed'], undefined, 'a first answer is not a replay');
}

function assertReplayOf(res, first) {
  assert.equal(res.status, 202, `${res.status} ${res.text}`);
  assert.equal(res.headers['idempotent-replayed'], 'true');
  assert.equal(res.body.id, first.body.id);
  assert.equal(res.text, first.text, 'the replay is the first answer, byte for byte');
}

test('same key, same body: the first answer again, Idempotent-Replayed: true, one job', async () => {
  const body = raw('once');
  const first = await keyed('order-1', body);
  assertFresh(first);
  const stored = await env.snapshot();
  for (const protocol of ['h2c', 'http1', 'h2']) {
    const again = await keyed('order-1', body, { protocol });
    assertReplayOf(again, first);
    assert.deepEqual(await env.snapshot(), stored, `${protocol}: the replay changed Redis`);
  }
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), [first.body.id]);

  const key = l.idempotencyRedisKey('acme', 'order-1');
  assert.equal(await env.client.type(key), 'string', `${key} holds the first answer`);
  const ttl = await env.client.ttl(key);
  assert.ok(ttl > WINDOW_SECONDS - 30 && ttl <= WINDOW_SECONDS, `kept for the window: TTL ${ttl}`);

  // Without the key, the same body is a new job.
  const unkeyed = await keyed(undefined, body);
  assertFresh(unkeyed);
  assert.notEqual(unkeyed.body.id, first.body.id);
  assert.equal((await h.queueContents(env.client, 'mailers')).length, 2);
});

test('same key, another request: 422 idempotency-key-reused, nothing written', async () => {
  const body = raw('original');
  const first = await keyed('order-2', body);
  assertFresh(first);
  // Other arguments; the same JSON with other whitespace (the fingerprint is over the
  // raw bytes); the same body to another queue.
  await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('order-2', raw('changed')));
  await h.assertRejected(env, 422, 'idempotency-key-reused',
    () => keyed('order-2', JSON.stringify(l.job('original'), null, 1)));
  await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('order-2', body, { queue: 'alerts' }));
  await h.assertRejected(env, 422, 'idempotency-key-reused',
    () => l.enqueueBatch(env, 'mailers', { headers: h.jobHeaders(l.tenantToken(env, 'acme'),
      { 'idempotency-key': 'order-2' }), body: JSON.stringify({ jobs: [l.job('original')] }) }));
  // The key still stands for the first request.
  assertReplayOf(await keyed('order-2', body), first);
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), [first.body.id]);
});

test('the audit log names the job a replay answered, and no job for a refused request', async () => {
  const body = raw('audited');
  const first = await keyed('order-audit', body);
  assertFresh(first);
  // Log lines are written once per loop turn, and reach the pipe a little after the answer.
  await h.sleep(100);
  const seen = env.gate.logs.length;
  assertReplayOf(await keyed('order-audit', body), first);
  await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('order-audit', raw('other')));
  await h.sleep(100);

  const lines = env.gate.logs.slice(seen).filter((line) => line.event === 'request');
  assert.equal(lines.length, 2, JSON.stringify(lines));
  const [replay, refused] = lines;
  assert.equal(replay.status, 202);
  assert.equal(replay.replayed, true);
  assert.equal(replay.job_id, first.body.id, 'the replay names the first job');
  assert.equal(replay.class, first.body.class);
  assert.equal(refused.status, 422);
  assert.equal(refused.problem, 'urn:jobgate:problem:idempotency-key-reused');
  assert.ok(!('job_id' in refused) || refused.job_id === null, `a refused request names a job: ${refused.job_id}`);
});

test('keys are per tenant: the same key from two tenants names two requests', async () => {
  const acme = await keyed('shared-key', raw('acme'), { tenant: 'acme' });
  assertFresh(acme);
  // Another tenant, same key, another body: no conflict.
  const globex = await keyed('shared-key', raw('globex'), { tenant: 'globex' });
  assertFresh(globex);
  // Another tenant, same key and the same body as acme's: a job of its own.
  const initech = await keyed('shared-key', raw('acme'), { tenant: 'initech' });
  assertFresh(initech);
  assert.equal(new Set([acme.body.id, globex.body.id, initech.body.id]).size, 3);
  // Each replays its own.
  assertReplayOf(await keyed('shared-key', raw('acme'), { tenant: 'acme' }), acme);
  assertReplayOf(await keyed('shared-key', raw('globex'), { tenant: 'globex' }), globex);
  assertReplayOf(await keyed('shared-key', raw('acme'), { tenant: 'initech' }), initech);
  assert.deepEqual((await l.storedIds(env.client, 'mailers')).sort(),
    [acme.body.id, globex.body.id, initech.body.id].sort());
  for (const tenant of ['acme', 'globex', 'initech']) {
    assert.equal(await env.client.exists(l.idempotencyRedisKey(tenant, 'shared-key')), 1, tenant);
  }
});

test('malformed keys: 400 invalid-idempotency-key, nothing written', async () => {
  const cases = [
    ['empty', ''],
    ['256 characters', 'k'.repeat(256)],
    ['a space', 'order 1'],
    ['a tab', 'order\t1'],
    ['non-ASCII', 'ordré'],
    ['empty quoted string', '""'],
    ['quoted string over 255', `"${'k'.repeat(256)}"`],
  ];
  for (const [what, key] of cases) {
    for (const protocol of ['h2c', 'http1']) {
      const res = await h.assertRejected(env, 400, 'invalid-idempotency-key',
        () => keyed(key, raw('bad-key'), { protocol }));
      assert.ok(!res.text.includes('ordr'), `${what}: the answer echoes the key: ${res.text}`);
    }
  }
  // The extremes of a valid key are fine: 255 characters, every visible ASCII character.
  assertFresh(await keyed('k'.repeat(255), raw('long-key')));
  const visible = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
    .join('').replace('"', '');
  assertFresh(await keyed(visible, raw('visible-key')));
  assertFresh(await keyed('1', raw('short-key')));
});

test('a quoted key is the same key as the bare one', async () => {
  const body = raw('quoted');
  const first = await keyed('"abc"', body);
  assertFresh(first);
  assertReplayOf(await keyed('abc', body), first);
  assertReplayOf(await keyed('"abc"', body), first);
  await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('abc', raw('other')));
  assert.equal(await env.client.exists(l.idempotencyRedisKey('acme', 'abc')), 1,
    'stored under the key without its quotes');
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), [first.body.id]);
});

test('a failed request stores nothing: the same key with another body is then accepted', async () => {
  // Refused while parsing: unknown class (422), malformed JSON (400).
  await h.assertRejected(env, 422, 'unknown-class',
    () => keyed('retry-1', JSON.stringify({ class: 'DropAllTables', args: [] })));
  await h.assertRejected(env, 400, 'malformed-json', () => keyed('retry-1', '{"class":'));
  const fixed = await keyed('retry-1', raw('fixed'));
  assertFresh(fixed);
  assertReplayOf(await keyed('retry-1', raw('fixed')), fixed);

  // Refused by the Redis script itself: the queue is full (503).
  assertFresh(await keyed(undefined, raw('filler'), { queue: 'capped' }));
  await h.assertRejected(env, 503, 'queue-full', () => keyed('retry-2', raw('first'), { queue: 'capped' }));
  assert.equal(await env.client.exists(l.idempotencyRedisKey('acme', 'retry-2')), 0);
  await env.client.lpop('resque:queue:capped');
  const second = await keyed('retry-2', raw('second'), { queue: 'capped' });
  assertFresh(second);
  assert.deepEqual(await l.storedIds(env.client, 'capped'), [second.body.id]);
});

test('a replay charges no rate in Redis', async () => {
  const key = l.rateKey('metered');
  const first = await keyed('metered-1', raw('m1'), { tenant: 'metered' });
  assertFresh(first);
  const tat = await env.client.get(key);
  assert.match(String(tat), /^\d+$/, 'the tenant\'s rate key');
  for (let i = 0; i < 3; i++) {
    assertReplayOf(await keyed('metered-1', raw('m1'), { tenant: 'metered' }), first);
  }
  assert.equal(await env.client.get(key), tat, 'a replay moved the TAT');
  // A new key is a new job, and is charged one interval.
  assertFresh(await keyed('metered-2', raw('m1'), { tenant: 'metered' }));
  assert.equal(BigInt(await env.client.get(key)) - BigInt(tat), BigInt(1e6 / METERED.perSecond));
});

test('once the stored answer is gone (the window passed), the key makes a new job', async () => {
  const body = raw('expiring');
  const first = await keyed('expiring-1', body);
  assertFresh(first);
  assert.equal(await env.client.del(l.idempotencyRedisKey('acme', 'expiring-1')), 1);
  const second = await keyed('expiring-1', body);
  assertFresh(second);
  assert.notEqual(second.body.id, first.body.id);
  assert.equal((await h.queueContents(env.client, 'mailers')).length, 2);
});

test('20 concurrent requests with one key and body, each on its own connection: one job, one id', async () => {
  const body = raw('race');
  const headers = h.jobHeaders(l.tenantToken(env, 'racer'), { 'idempotency-key': 'race-1' });
  const sessions = await Promise.all(Array.from({ length: 20 }, () => h.h2Connect(env.gate.base)));
  let answers;
  try {
    answers = await Promise.all(sessions.map((session) =>
      h.enqueue(env, 'mailers', { session, headers, body })));
  } finally {
    for (const session of sessions) session.close();
  }
  for (const res of answers) assert.equal(res.status, 202, `${res.status} ${res.text}`);
  const ids = new Set(answers.map((res) => res.body.id));
  assert.equal(ids.size, 1, `several ids: ${[...ids].join(', ')}`);
  assert.equal(new Set(answers.map((res) => res.text)).size, 1, 'the answers differ');
  const fresh = answers.filter((res) => res.headers['idempotent-replayed'] === undefined);
  assert.equal(fresh.length, 1, 'exactly one answer is not a replay');
  for (const res of answers) {
    if (res !== fresh[0]) assert.equal(res.headers['idempotent-replayed'], 'true');
  }
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), [...ids]);
});

test('a batch with an Idempotency-Key is replayed whole', async () => {
  const token = l.tenantToken(env, 'acme');
  const headers = h.jobHeaders(token, { 'idempotency-key': 'batch-1' });
  const body = JSON.stringify({ jobs: [l.job('b0'), l.job('b1'), l.job('b2')] });
  const first = await l.enqueueBatch(env, 'mailers', { headers, body });
  assert.equal(first.status, 202, `${first.status} ${first.text}`);
  assert.equal(first.headers['idempotent-replayed'], undefined);
  assert.equal(first.body.queue, 'mailers');
  assert.equal(first.body.jobs.length, 3);
  const ids = first.body.jobs.map((item) => item.id);
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), ids);

  const stored = await env.snapshot();
  const again = await l.enqueueBatch(env, 'mailers', { headers, body });
  assert.equal(again.status, 202, again.text);
  assert.equal(again.headers['idempotent-replayed'], 'true');
  assert.equal(again.text, first.text);
  assert.deepEqual(await env.snapshot(), stored, 'the replay changed Redis');

  // The batch's key with one job of it, or with another batch: reused.
  await h.assertRejected(env, 422, 'idempotency-key-reused',
    () => keyed('batch-1', JSON.stringify(l.job('b0'))));
  await h.assertRejected(env, 422, 'idempotency-key-reused', () => l.enqueueBatch(env, 'mailers',
    { headers, body: JSON.stringify({ jobs: [l.job('b0'), l.job('b1')] }) }));
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), ids);
});
