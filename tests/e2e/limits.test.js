'use strict';
/*
 * Flood controls on one gateway: per-tenant job rates ("tenants": 429 rate-limited with
 * Retry-After, RateLimit-Policy and RateLimit; a named tenant's own rate over "*"; each
 * tenant its own bucket, kept in Redis at <ns>:jobgate:rate:<tenant>), sizes (a
 * tenant's max_body_bytes: 413 payload-too-large; limits.max_header_bytes: 431
 * headers-too-large; limits.max_job_bytes: 413 job-too-large) and a queue's max_depth
 * (503 queue-full, no rate charged). Every rejection leaves Redis exactly as it was,
 * the rate key included.
 */
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const l = require('./lib/limits');

const STAR = { perSecond: 5, burst: 10 };
const SLOW = { perSecond: 1, burst: 3 };
const ROOMY = { perSecond: 5, burst: 25 };
const DEPTH_RATE = { perSecond: 0.1, burst: 100 }; // one job every 10 s: the TAT moves by 1e7 us a job
const THRIFTY = { perSecond: 0.05, burst: 3 }; // nothing refills while a test runs
const TINY_BODY = 1024;
const MAX_HEADER_BYTES = 2048;
const MAX_JOB_BYTES = 4096;
const MAX_DEPTH = 3;

let env;

before(async () => {
  env = await h.setupEnvironment({ overrides: {
    limits: { max_header_bytes: MAX_HEADER_BYTES, max_job_bytes: MAX_JOB_BYTES },
    tenants: {
      '*': { jobs_per_second: STAR.perSecond, burst: STAR.burst },
      slow: { jobs_per_second: SLOW.perSecond, burst: SLOW.burst },
      roomy: { jobs_per_second: ROOMY.perSecond, burst: ROOMY.burst },
      depth: { jobs_per_second: DEPTH_RATE.perSecond, burst: DEPTH_RATE.burst },
      thrifty: { jobs_per_second: THRIFTY.perSecond, burst: THRIFTY.burst },
      free: { jobs_per_second: 0 },
      'tiny-body': { jobs_per_second: 0, max_body_bytes: TINY_BODY },
    },
    queues: {
      capped: { tier: 'standard', classes: ['SendWelcomeEmail'], tenants: ['*'], max_depth: MAX_DEPTH },
    },
  } });
});

after(async () => {
  if (env) await env.teardown();
});

beforeEach(async () => {
  // Buckets in the gateway's memory survive this; every test uses tenants of its own.
  await env.client.flushall();
});

/**
 * Sends jobs for tenant until the first rejection and checks the count against the
 * bucket: at least burst (the bucket starts full, and only fills with time), at most
 * burst plus what refilled while the requests ran. Returns sendUntilRejected's result.
 */
async function drain(tenant, rate) {
  const token = l.tenantToken(env, tenant);
  const result = await l.sendUntilRejected(env, { token, max: rate.burst + 40, tag: tenant });
  const n = result.accepted.length;
  assert.ok(result.rejected, `${tenant}: ${n} jobs accepted and none refused`);
  const refilled = Math.floor((result.elapsedMs / 1000) * rate.perSecond);
  assert.ok(n >= rate.burst, `${tenant}: only ${n} of a burst of ${rate.burst} accepted: ` +
    `${result.rejected.status} ${result.rejected.text}`);
  assert.ok(n <= rate.burst + refilled, `${tenant}: ${n} accepted in ${result.elapsedMs.toFixed(0)} ms; ` +
    `the bucket allows ${rate.burst} + ${refilled}`);
  return result;
}

/* ---------- Tenant rates ---------- */

test('a tenant under "*": a burst accepted, then 429 rate-limited with Retry-After and RateLimit headers, Redis untouched', async (t) => {
  const tenant = 'star-one';
  const result = await drain(tenant, STAR);
  t.diagnostic(`${result.accepted.length} accepted in ${result.elapsedMs.toFixed(0)} ms before the 429`);

  // The rejection: the problem, its headers, and Redis exactly as before it (rate key included).
  const rejected = result.rejected;
  const retry = l.assertRateLimited(rejected, STAR);
  assert.equal(rejected.headers['ratelimit-policy'], '"tenant";q=10;w=2');
  assert.deepEqual(await env.snapshot(), result.before, 'Redis changed after the 429');

  // Every 202 carries the policy and what is left; the first took one of a full bucket.
  const refilled = Math.floor((result.elapsedMs / 1000) * STAR.perSecond);
  for (const [i, res] of result.accepted.entries()) {
    assert.equal(res.headers['ratelimit-policy'], '"tenant";q=10;w=2', `202 #${i}`);
    const { r, t: reset } = l.parseRateLimit(res.headers.ratelimit);
    // i jobs were taken before this one, and at most `refilled` came back meanwhile.
    assert.ok(r <= Math.min(STAR.burst - 1, STAR.burst - 1 - i + refilled), `202 #${i}: r=${r}`);
    assert.ok(reset >= 1 && reset <= 2, `202 #${i}: t=${reset}`);
  }
  assert.deepEqual(l.parseRateLimit(result.accepted[0].headers.ratelimit), { r: 9, t: 1 },
    'a full bucket of 10 at 5/s, one job taken: 9 left, full again within 1 s');

  // Redis: every accepted job, nothing else; the tenant's rate key, expiring when full.
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), result.accepted.map((res) => res.body.id));
  const tat = await env.client.get(l.rateKey(tenant));
  assert.match(String(tat), /^\d+$/, `${l.rateKey(tenant)} holds a TAT in microseconds: ${tat}`);
  const pttl = await env.client.pttl(l.rateKey(tenant));
  assert.ok(pttl > 0 && pttl <= 2000 + 100, `the rate key expires when the bucket is full: PTTL ${pttl}`);

  // After Retry-After, the tenant may enqueue again.
  await h.sleep(retry * 1000 + 150);
  const again = await h.enqueue(env, 'mailers', { token: l.tenantToken(env, tenant), body: l.job('again') });
  assert.equal(again.status, 202, `after Retry-After ${retry}: ${again.status} ${again.text}`);
  assert.equal(again.headers['ratelimit-policy'], '"tenant";q=10;w=2');
  assert.equal((await h.queueContents(env.client, 'mailers')).length, result.accepted.length + 1);
});

test('a rejected job does not move the rate key; an accepted one does', async () => {
  const tenant = 'star-two';
  const result = await drain(tenant, STAR);
  const key = l.rateKey(tenant);
  assert.equal(result.before[key]?.type, 'string', `${key} exists after accepted jobs`);
  const snapshot = await env.snapshot();
  assert.deepEqual(snapshot[key], result.before[key], 'the 429 changed the rate key');
  assert.deepEqual(snapshot, result.before);
});

test('what Redis did not write spends nothing in this process either, and a replay is answered whatever the rate',
  async () => {
    const token = l.tenantToken(env, 'thrifty');
    const keyed = (key, tag, queue = 'mailers') => h.enqueue(env, queue, { token, body: l.job(tag),
      headers: h.jobHeaders(token, { 'idempotency-key': key }) });
    const first = await keyed('thrifty-1', 't1');
    assert.equal(first.status, 202, first.text);
    assert.equal(l.parseRateLimit(first.headers.ratelimit).r, THRIFTY.burst - 1);

    // More replays than the burst: each answers the first job, with what is left.
    for (let i = 0; i < THRIFTY.burst + 2; i++) {
      const replay = await keyed('thrifty-1', 't1');
      assert.equal(replay.status, 202, `replay ${i}: ${replay.text}`);
      assert.equal(replay.headers['idempotent-replayed'], 'true');
      assert.equal(replay.body.id, first.body.id);
      assert.equal(replay.headers['ratelimit-policy'], l.expectedPolicy(THRIFTY.burst, THRIFTY.perSecond));
      assert.equal(l.parseRateLimit(replay.headers.ratelimit).r, THRIFTY.burst - 1, `replay ${i}`);
    }
    for (let i = 0; i < THRIFTY.burst + 2; i++) {
      await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('thrifty-1', `other-${i}`));
    }
    // A full queue: filled by an unlimited tenant, refused to this one as often as its burst.
    const free = l.tenantToken(env, 'free');
    for (let i = 0; i < MAX_DEPTH; i++) {
      assert.equal((await h.enqueue(env, 'capped', { token: free, body: l.job(`f${i}`) })).status, 202);
    }
    for (let i = 0; i < THRIFTY.burst + 2; i++) {
      await h.assertRejected(env, 503, 'queue-full', () => keyed(`thrifty-full-${i}`, `full-${i}`, 'capped'));
    }

    // The rest of the burst is still there, in this process as in Redis, and no more.
    for (let i = 2; i <= THRIFTY.burst; i++) {
      const res = await keyed(`thrifty-${i}`, `t${i}`);
      assert.equal(res.status, 202, `job ${i}: ${res.text}`);
    }
    await h.assertRejected(env, 429, 'rate-limited', () => keyed('thrifty-over', 'over'));
    assert.equal((await l.storedIds(env.client, 'mailers')).length, THRIFTY.burst);

    // With the rate spent, a retry of a request written before still gets its answer,
    // and the same key with another request is still refused as such; nothing changes.
    const before = await env.snapshot();
    const late = await keyed('thrifty-1', 't1');
    assert.equal(late.status, 202, late.text);
    assert.equal(late.headers['idempotent-replayed'], 'true');
    assert.equal(late.text, first.text);
    assert.equal(l.parseRateLimit(late.headers.ratelimit).r, 0);
    await h.sleep(100); // its audit line names the job it answered with
    const replays = env.gate.logs.filter((line) => line.event === 'request' && line.replayed);
    assert.equal(replays[replays.length - 1].job_id, first.body.id);
    assert.equal(replays[replays.length - 1].class, first.body.class);
    await h.assertRejected(env, 422, 'idempotency-key-reused', () => keyed('thrifty-1', 'another'));
    assert.deepEqual(await env.snapshot(), before);
    const batch = JSON.stringify({ jobs: [l.job('b1'), l.job('b2')] });
    await h.assertRejected(env, 429, 'rate-limited', () => l.enqueueBatch(env, 'mailers',
      { headers: h.jobHeaders(token, { 'idempotency-key': 'thrifty-batch' }), body: batch }));
  });

test('a named tenant\'s own rate overrides "*": a smaller burst', async () => {
  const result = await drain('slow', SLOW);
  l.assertRateLimited(result.rejected, SLOW);
  assert.equal(result.rejected.headers['ratelimit-policy'], '"tenant";q=3;w=3');
  assert.deepEqual(await env.snapshot(), result.before);
  for (const res of result.accepted) assert.equal(res.headers['ratelimit-policy'], '"tenant";q=3;w=3');
  assert.ok(await env.client.exists(l.rateKey('slow')));
});

test('a named tenant\'s own rate overrides "*": a larger burst', async () => {
  const result = await drain('roomy', ROOMY);
  assert.ok(result.accepted.length > STAR.burst, 'more than "*" would allow');
  l.assertRateLimited(result.rejected, ROOMY);
  assert.equal(result.rejected.headers['ratelimit-policy'], '"tenant";q=25;w=5');
  assert.deepEqual(await env.snapshot(), result.before);
});

test('two tenants under "*" have a bucket each', async () => {
  const a = await drain('tenant-a', STAR);
  // Right after tenant-a ran dry, tenant-b still gets its whole burst.
  const b = await drain('tenant-b', STAR);
  assert.ok(b.accepted.length >= STAR.burst);
  assert.ok(await env.client.exists(l.rateKey('tenant-a')), 'tenant-a\'s rate key');
  assert.ok(await env.client.exists(l.rateKey('tenant-b')), 'tenant-b\'s rate key');
  const ids = await l.storedIds(env.client, 'mailers');
  assert.deepEqual(ids, [...a.accepted, ...b.accepted].map((res) => res.body.id));
});

test('an unlimited tenant (jobs_per_second 0): no RateLimit headers, no rate key', async () => {
  const token = l.tenantToken(env, 'free');
  const session = await h.h2Connect(env.gate.base);
  try {
    for (let i = 0; i < STAR.burst * 3; i++) {
      const res = await h.enqueue(env, 'mailers', { session, token, body: l.job(i) });
      assert.equal(res.status, 202, `job ${i}: ${res.text}`);
      assert.equal(res.headers['ratelimit-policy'], undefined);
      assert.equal(res.headers.ratelimit, undefined);
    }
  } finally {
    session.close();
  }
  assert.equal(await env.client.exists(l.rateKey('free')), 0);
});

/* ---------- Sizes ---------- */

/** A job body of exactly size bytes. */
function bodyOfSize(size, className = 'SendWelcomeEmail') {
  const skeleton = JSON.stringify({ class: className, args: [''] });
  const body = JSON.stringify({ class: className, args: ['x'.repeat(size - skeleton.length)] });
  assert.equal(Buffer.byteLength(body), size);
  return body;
}

test('a tenant\'s max_body_bytes under the queue\'s: 413 payload-too-large for that tenant only', async () => {
  const tiny = l.tenantToken(env, 'tiny-body');
  // Sizes whose envelopes stay under max_job_bytes, so that only the body limit applies.
  for (const size of [TINY_BODY + 1, 2000, 3000]) {
    for (const protocol of ['h2c', 'http1']) {
      await h.assertRejected(env, 413, 'payload-too-large',
        () => h.enqueue(env, 'mailers', { protocol, token: tiny, body: bodyOfSize(size) }));
    }
    // The same body from another tenant is fine.
    const other = await h.enqueue(env, 'mailers', { token: l.tenantToken(env, 'free'), body: bodyOfSize(size) });
    assert.equal(other.status, 202, `${size} bytes from tenant free: ${other.text}`);
  }
  // At the tenant's limit exactly: accepted.
  const res = await h.enqueue(env, 'mailers', { token: tiny, body: bodyOfSize(TINY_BODY) });
  assert.equal(res.status, 202, res.text);
});

test('headers over limits.max_header_bytes: 431 headers-too-large, nothing written', async () => {
  const token = l.tenantToken(env, 'free');
  const big = h.jobHeaders(token, { 'x-padding': 'p'.repeat(MAX_HEADER_BYTES) });
  for (const protocol of ['h2c', 'http1']) {
    await h.assertRejected(env, 431, 'headers-too-large',
      () => h.enqueue(env, 'mailers', { protocol, headers: big, body: l.job('431') }));
  }
  // Well under the limit (the client adds under 100 bytes of its own): accepted.
  const small = h.jobHeaders(token, { 'x-padding': 'p'.repeat(MAX_HEADER_BYTES / 2) });
  const res = await h.enqueue(env, 'mailers', { headers: small, body: l.job('ok') });
  assert.equal(res.status, 202, res.text);
});

test('a job whose envelope exceeds limits.max_job_bytes: 413 job-too-large, nothing written', async () => {
  const token = l.tenantToken(env, 'free');
  // The body itself is under max_job_bytes; the envelope (id, queue, class, times...) is not.
  const body = bodyOfSize(MAX_JOB_BYTES - 16);
  await h.assertRejected(env, 413, 'job-too-large', () => h.enqueue(env, 'mailers', { token, body }));
  await h.assertRejected(env, 413, 'job-too-large',
    () => h.enqueue(env, 'mailers', { token, body: bodyOfSize(MAX_JOB_BYTES * 4) }));
  // A smaller job is fine, and its stored envelope is within the limit.
  const res = await h.enqueue(env, 'mailers', { token, body: bodyOfSize(MAX_JOB_BYTES / 2) });
  assert.equal(res.status, 202, res.text);
  const [payload] = await h.queueContents(env.client, 'mailers');
  const envelope = JSON.parse(payload).args[0];
  assert.equal(envelope.id, res.body.id);
});

/* ---------- Queue depth ---------- */

test('a queue at max_depth: 503 queue-full with Retry-After, nothing written, no rate charged', async () => {
  const tenant = 'depth';
  const token = l.tenantToken(env, tenant);
  const key = l.rateKey(tenant);
  const ids = [];
  for (let i = 0; i < MAX_DEPTH; i++) {
    const res = await h.enqueue(env, 'capped', { token, body: l.job(`d${i}`) });
    assert.equal(res.status, 202, `job ${i}: ${res.text}`);
    ids.push(res.body.id);
  }
  const tatBefore = await env.client.get(key);
  assert.match(String(tatBefore), /^\d+$/, 'the tenant\'s rate key after accepted jobs');

  for (let i = 0; i < 2; i++) {
    const res = await h.assertRejected(env, 503, 'queue-full',
      () => h.enqueue(env, 'capped', { token, body: l.job('over') }));
    assert.equal(res.headers['retry-after'], '5');
  }
  assert.equal(await env.client.get(key), tatBefore, 'queue-full charged the rate');
  assert.deepEqual(await l.storedIds(env.client, 'capped'), ids);

  // A worker takes one: there is room for one again, and that one is charged.
  assert.ok(await env.client.lpop('resque:queue:capped'));
  const res = await h.enqueue(env, 'capped', { token, body: l.job('room') });
  assert.equal(res.status, 202, res.text);
  const tatAfter = await env.client.get(key);
  assert.equal(BigInt(tatAfter) - BigInt(tatBefore), BigInt(1e6 / DEPTH_RATE.perSecond),
    'an accepted job moves the TAT by one interval');
  assert.deepEqual(await l.storedIds(env.client, 'capped'), [...ids.slice(1), res.body.id]);
  await h.assertRejected(env, 503, 'queue-full', () => h.enqueue(env, 'capped', { token, body: l.job('full') }));
  // Other queues are not capped.
  const mailers = await h.enqueue(env, 'mailers', { token, body: l.job('elsewhere') });
  assert.equal(mailers.status, 202, mailers.text);
});
