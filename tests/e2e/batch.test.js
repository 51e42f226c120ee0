'use strict';
/*
 * The batch endpoint, POST /v1/queues/{queue}/jobs:batch with {"jobs": [...]}: all or
 * nothing, in request order; 422 invalid-batch naming every failing item (bounded);
 * 413 too-many-jobs over limits.max_batch_jobs or the tenant's burst; 400 for a body
 * that is not a batch; a batch of n jobs counts n against its tenant's rate, locally and
 * in Redis; 503 queue-full over a queue's max_depth; the single endpoint's 401, 403,
 * 404, 405, 413 and 415.
 *
 * The config: max_batch_jobs 20, max_job_bytes 4096; tenant acme (the harness's tokens)
 * unlimited, every other tenant ("*") 0.2 jobs a second with a burst of 5; the queue
 * reports holds at most 3 jobs; SendWelcomeEmail is checked against its real schema.
 */
const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./lib/harness');

const MAX_BATCH_JOBS = 20;
const MAX_JOB_BYTES = 4096;
const RATE = { jobs_per_second: 0.2, burst: 5 };
const MAX_DEPTH = 3;
const SECRET = 'batch-s3cr3t-value';
const P = h.PROBLEM;
const OVERRIDES = {
  limits: { max_batch_jobs: MAX_BATCH_JOBS, max_job_bytes: MAX_JOB_BYTES },
  tenants: { '*': RATE, acme: { jobs_per_second: 0 } },
  classes: { SendWelcomeEmail: { schema: path.join(h.REPO, 'schemas', 'SendWelcomeEmail.json') } },
  queues: { reports: { max_depth: MAX_DEPTH } },
};

let env;
let token;
const extraGates = [];

before(async () => {
  env = await h.setupEnvironment({ overrides: OVERRIDES });
  token = env.token();
  // Something in Redis already, so that "unchanged" is not empty-equals-empty.
  const res = await h.enqueue(env, 'mailers', { token, body: { class: 'SendWelcomeEmail', args: [{ user_id: 1 }] } });
  assert.equal(res.status, 202, res.text);
});

// A tenant's rate key expires by itself once its bucket is full again; left behind, it
// could vanish between a later test's before and after snapshots of Redis. Each test
// that is rate-limited uses tenants of its own, so forgetting their state is harmless.
afterEach(async () => {
  const keys = await env.client.keys('resque:jobgate:rate:*');
  if (keys.length > 0) await env.client.del(...keys);
});

after(async () => {
  for (const gate of extraGates) await gate.stop().catch(() => {});
  if (env) await env.teardown();
});

/** POSTs a batch: opts { protocol = 'h2c', token, body, headers, gate, method }. */
function batch(queue, { protocol = 'h2c', token: bearer = token, body, headers, method = 'POST', ...rest } = {}) {
  return h.send(env, protocol, { method, path: `/v1/queues/${queue}/jobs:batch`,
    headers: headers || h.jobHeaders(bearer), body, ...rest });
}

/** A tenant's token (every tenant but acme is rate-limited by "*"). */
const tenantToken = (tenant) => env.token('HS256', { tenant });

const welcome = (userId, extra = {}) => ({ class: 'SendWelcomeEmail', args: [{ user_id: userId, ...extra }] });
const report = (n) => ({ class: 'BuildReport', args: [{ n }] });

/** Checks a 202 batch answer: queue, then one {id, class} per job, in order. */
function assertAccepted(res, queue, jobs) {
  assert.equal(res.status, 202, res.text);
  assert.match(String(res.headers['content-type']), /^application\/json\b/);
  assert.deepEqual(Object.keys(res.body).sort(), ['jobs', 'queue']);
  assert.equal(res.body.queue, queue);
  assert.equal(res.body.jobs.length, jobs.length);
  res.body.jobs.forEach((answered, i) => {
    assert.deepEqual(Object.keys(answered).sort(), ['class', 'id']);
    assert.equal(answered.class, jobs[i].class);
    assert.match(answered.id, h.UUID_RE);
  });
  assert.equal(new Set(res.body.jobs.map((j) => j.id)).size, jobs.length, 'ids are distinct');
  return res.body.jobs.map((j) => j.id);
}

/* ---------- Accepted batches ---------- */

test('three valid jobs: 202 with three ids in request order, and three signed payloads in Redis in that order',
  async () => {
    const jobs = [
      welcome(11, { email: 'eleven@example.com', plan: 'pro' }),
      { class: 'SendPasswordReset', args: ['reset', 12, { nested: [true, null] }] },
      welcome(13),
    ];
    for (const protocol of ['h2c', 'http1', 'h2']) {
      const before = await h.queueContents(env.client, 'mailers');
      const res = await batch('mailers', { protocol, body: { jobs } });
      const ids = assertAccepted(res, 'mailers', jobs);

      const stored = await h.queueContents(env.client, 'mailers');
      assert.deepEqual(stored.slice(0, before.length), before, `${protocol}: earlier jobs untouched`);
      const added = stored.slice(before.length);
      assert.equal(added.length, 3, `${protocol}: three payloads written`);
      for (const [i, payload] of added.entries()) {
        // openPayload checks the envelope's signature and proof with the worker kit.
        const opened = await h.openPayload(env.material, payload, 'mailers');
        const { envelope } = opened;
        assert.equal(opened.class, jobs[i].class);
        assert.deepEqual(opened.args, jobs[i].args);
        assert.equal(envelope.id, ids[i], `${protocol}: payload ${i} carries the id answered for job ${i}`);
        assert.equal(envelope.class, jobs[i].class);
        assert.equal(envelope.queue, 'mailers');
        assert.equal(envelope.tenant, 'acme');
        assert.equal(envelope.sub, 'svc-signup');
        assert.equal(typeof envelope.sig, 'string');
        const { proof } = envelope;
        assert.equal(typeof proof, 'object', 'every envelope has a proof');
        assert.ok(Number.isInteger(proof.size) && proof.size >= 1, JSON.stringify(proof));
        assert.ok(Number.isInteger(proof.index) && proof.index >= 0 && proof.index < proof.size,
          JSON.stringify(proof));
        assert.ok(Array.isArray(proof.path));
      }
      assert.ok(await env.client.sismember('resque:queues', 'mailers'));
    }
  });

test('a batch of exactly max_batch_jobs is accepted; one more job is 413 too-many-jobs, nothing written',
  async () => {
    const jobs = Array.from({ length: MAX_BATCH_JOBS }, (_, i) => welcome(100 + i));
    const before = (await h.queueContents(env.client, 'mailers')).length;
    const ids = assertAccepted(await batch('mailers', { body: { jobs } }), 'mailers', jobs);
    const added = (await h.openQueue(env, 'mailers')).slice(before);
    assert.deepEqual(added.map((job) => job.envelope.id), ids);
    assert.deepEqual(added.map((job) => job.args[0].user_id), jobs.map((job) => job.args[0].user_id));

    for (const protocol of ['h2c', 'http1']) {
      await h.assertRejected(env, 413, 'too-many-jobs', () => batch('mailers', { protocol,
        body: { jobs: [...jobs, welcome(999)] } }));
    }
    // Even when every job in it is invalid: the count is checked first.
    await h.assertRejected(env, 413, 'too-many-jobs', () => batch('mailers',
      { body: { jobs: Array(MAX_BATCH_JOBS + 1).fill({ class: 'DropAllTables', args: [] }) } }));
  });

/* ---------- Bodies that are not a batch ---------- */

test('not a batch: empty, not an array, extra members, not an object: 400 invalid-job', async () => {
  const one = welcome(1);
  for (const body of [
    { jobs: [] },
    { jobs: {} },
    { jobs: { 0: one } },
    { jobs: one },
    { jobs: null },
    { jobs: 'x' },
    { jobs: [one], extra: 1 },
    { jobs: [one], queue: 'reports' },
    { Jobs: [one] },
    {},
    one, // a single job is not a batch
    [one],
    [],
    '"jobs"',
    '42',
    'null',
    '',
  ]) {
    for (const protocol of ['h2c', 'http1']) {
      const res = await h.assertRejected(env, 400, 'invalid-job', () => batch('mailers', { protocol, body }));
      assert.ok(!res.text.includes(SECRET));
    }
  }
});

test('malformed JSON: 400 malformed-json, nothing written', async () => {
  const bodies = [
    '{"jobs":[',
    '{"jobs":[{"class":"SendWelcomeEmail","args":[{"user_id":1}]},]}',
    '{"jobs":[{"class":"SendWelcomeEmail","args":[{"user_id":1}]}],"jobs":[]}',
    '{"jobs":[{"class":"SendWelcomeEmail","class":"SendWelcomeEmail","args":[]}]}',
    '{"jobs":[{"class":"SendWelcomeEmail","args":[{"user_id":1}]}]} x',
    `{"jobs":[{"class":"SendWelcomeEmail","args":["${SECRET}",]}]}`,
    Buffer.concat([Buffer.from('{"jobs":[{"class":"SendWelcomeEmail","args":["'), Buffer.from([0xff]),
      Buffer.from('"]}]}')]),
  ];
  for (const body of bodies) {
    const res = await h.assertRejected(env, 400, 'malformed-json', () => batch('mailers', { body }));
    assert.ok(!res.text.includes(SECRET), res.text);
  }
});

/* ---------- Invalid items ---------- */

const pointers = (item) => item.errors.map((e) => `${e.pointer} ${e.keyword}`).sort();

test('invalid items anywhere: 422 invalid-batch naming each by index and kind, nothing written', async () => {
  const jobs = [
    welcome(1),
    welcome(0, { email: 'not-an-email' }), // user_id minimum, email format
    { class: 'DropAllTables', args: [SECRET] },
    { class: 'SendWelcomeEmail' }, // no args
    SECRET, // not an object at all
    { class: 'SendWelcomeEmail', args: [{ user_id: 1 }], extra: SECRET },
    welcome(2),
  ];
  for (const protocol of ['h2c', 'http1']) {
    const res = await h.assertRejected(env, 422, 'invalid-batch', () => batch('mailers', { protocol,
      body: { jobs } }));
    const problem = res.body;
    assert.equal(problem.item_error_count, 5);
    assert.deepEqual(problem.items.map((item) => [item.index, item.type]), [
      [1, `${P}invalid-arguments`],
      [2, `${P}unknown-class`],
      [3, `${P}invalid-job`],
      [4, `${P}invalid-job`],
      [5, `${P}invalid-job`],
    ]);
    for (const item of problem.items) assert.equal(typeof item.detail, 'string');
    const [schemaItem] = problem.items;
    assert.equal(schemaItem.error_count, 2);
    assert.deepEqual(pointers(schemaItem), ['/jobs/1/args/0/email format', '/jobs/1/args/0/user_id minimum']);
    for (const error of schemaItem.errors) assert.equal(typeof error.message, 'string');
    assert.ok(!res.text.includes(SECRET) && !res.text.includes('not-an-email') && !res.text.includes('DropAllTables'),
      `the problem echoes a value from the request: ${res.text}`);
  }

  // One bad job first, or last, sinks the batch all the same.
  for (const jobsWithOneBad of [[welcome(0), welcome(1), welcome(2)], [welcome(1), welcome(2), welcome(-5)]]) {
    const bad = jobsWithOneBad.findIndex((j) => j.args[0].user_id < 1);
    const res = await h.assertRejected(env, 422, 'invalid-batch', () => batch('mailers',
      { body: { jobs: jobsWithOneBad } }));
    assert.equal(res.body.item_error_count, 1);
    assert.deepEqual(res.body.items.map((item) => item.index), [bad]);
    assert.deepEqual(pointers(res.body.items[0]), [`/jobs/${bad}/args/0/user_id minimum`]);
  }
  // A class allowed on another queue only.
  const res = await h.assertRejected(env, 422, 'invalid-batch', () => batch('mailers',
    { body: { jobs: [welcome(1), { class: 'BuildReport', args: [] }] } }));
  assert.deepEqual(res.body.items.map((item) => [item.index, item.type]), [[1, `${P}unknown-class`]]);
});

test('the list of failing items is bounded: 16 items, 4 errors each, with the true counts', async () => {
  // Six schema errors in one job: user_id minimum, email type, locale pattern, plan enum,
  // an extra member, an extra argument.
  const bad = { class: 'SendWelcomeEmail',
    args: [{ user_id: 0, email: 5, locale: 'XX', plan: 'gold', surprise: true }, 'more'] };
  const single = await h.assertRejected(env, 422, 'invalid-arguments', () => h.enqueue(env, 'mailers',
    { token, body: bad }));
  assert.ok(single.body.error_count > 4, `${single.body.error_count} errors in the single job`);

  const jobs = Array(MAX_BATCH_JOBS).fill(bad);
  const res = await h.assertRejected(env, 422, 'invalid-batch', () => batch('mailers', { body: { jobs } }));
  assert.equal(res.body.item_error_count, MAX_BATCH_JOBS);
  assert.equal(res.body.items.length, 16);
  assert.deepEqual(res.body.items.map((item) => item.index), Array.from({ length: 16 }, (_, i) => i));
  const singlePointers = new Set(single.body.errors.map((e) => `${e.pointer} ${e.keyword}`));
  for (const item of res.body.items) {
    assert.equal(item.type, `${P}invalid-arguments`);
    assert.equal(item.error_count, single.body.error_count);
    assert.equal(item.errors.length, 4);
    for (const error of item.errors) {
      const prefix = `/jobs/${item.index}/args`;
      assert.ok(error.pointer.startsWith(`${prefix}/`), error.pointer);
      // The same failures the single endpoint reports, re-rooted at the job in the batch.
      const asSingle = `/args${error.pointer.slice(prefix.length)} ${error.keyword}`;
      assert.ok(singlePointers.has(asSingle), `${asSingle} not among ${[...singlePointers]}`);
    }
  }
});

test('a job whose envelope is over max_job_bytes: an item job-too-large in 422 invalid-batch; alone, 413',
  async () => {
    const huge = { class: 'SendPasswordReset', args: ['x'.repeat(MAX_JOB_BYTES + 100)] };
    const res = await h.assertRejected(env, 422, 'invalid-batch', () => batch('mailers',
      { body: { jobs: [welcome(1), huge, welcome(2)] } }));
    assert.equal(res.body.item_error_count, 1);
    assert.deepEqual(res.body.items.map((item) => [item.index, item.type]), [[1, `${P}job-too-large`]]);
    await h.assertRejected(env, 413, 'job-too-large', () => h.enqueue(env, 'mailers', { token, body: huge }));
    // Just under the limit is fine (the envelope adds a few hundred bytes to the arguments).
    const fits = { class: 'SendPasswordReset', args: ['x'.repeat(MAX_JOB_BYTES - 1024)] };
    assertAccepted(await batch('mailers', { body: { jobs: [fits] } }), 'mailers', [fits]);
  });

/* ---------- Rate, burst and queue depth ---------- */

/** The tenant's GCRA state in Redis: how far its TAT is ahead of Redis's clock, in ms. */
async function rateDebtMs(tenant) {
  const tat = await env.client.get(`resque:jobgate:rate:${tenant}`);
  assert.match(String(tat), /^\d+$/, `resque:jobgate:rate:${tenant} holds a TAT in microseconds`);
  const [seconds, micros] = await env.client.time();
  return (Number(tat) - (Number(seconds) * 1e6 + Number(micros))) / 1000;
}

function assertRateHeaders(res) {
  const interval = Math.ceil(RATE.burst / RATE.jobs_per_second);
  assert.equal(res.headers['ratelimit-policy'], `"tenant";q=${RATE.burst};w=${interval}`);
  const match = /^"tenant";r=(\d+);t=(\d+)$/.exec(String(res.headers.ratelimit));
  assert.ok(match, `RateLimit: ${res.headers.ratelimit}`);
  return { remaining: Number(match[1]), reset: Number(match[2]) };
}

test('a batch counts each of its jobs against the tenant\'s rate: 4 of a burst of 5, then 2 more: 429', async () => {
  const bearer = tenantToken('globex');
  const jobs = [1, 2, 3, 4].map((n) => welcome(n));
  const res = await batch('mailers', { token: bearer, body: { jobs } });
  assertAccepted(res, 'mailers', jobs);
  // One job left of five; full again after 4 jobs at 0.2 a second: 20 s.
  const after202 = assertRateHeaders(res);
  assert.equal(after202.remaining, 1, res.headers.ratelimit);
  assert.ok(after202.reset >= 15 && after202.reset <= 20, res.headers.ratelimit);
  // Redis was charged 4 jobs (5 s each), not 1.
  const debt = await rateDebtMs('globex');
  assert.ok(debt > 15000 && debt <= 20500, `TAT ${debt} ms ahead`);
  const pttl = await env.client.pttl('resque:jobgate:rate:globex');
  assert.ok(pttl > 0 && pttl <= 25000, `the rate key expires when the bucket is full: PTTL ${pttl}`);

  const refused = await h.assertRejected(env, 429, 'rate-limited', () => batch('mailers', { token: bearer,
    body: { jobs: [welcome(5), welcome(6)] } }));
  const retryAfter = Number(refused.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 25,
    `Retry-After: ${refused.headers['retry-after']}`);
  const after429 = assertRateHeaders(refused);
  assert.ok(after429.remaining <= 1, refused.headers.ratelimit);
});

test('a batch over the tenant\'s burst (but under max_batch_jobs): 413 too-many-jobs, nothing written', async () => {
  const jobs = Array.from({ length: RATE.burst + 1 }, (_, i) => welcome(i + 1));
  await h.assertRejected(env, 413, 'too-many-jobs', () => batch('mailers', { token: tenantToken('initech'),
    body: { jobs } }));
  // The burst itself is fine (another tenant: the refused batch took one job from
  // initech's local bucket before it was parsed).
  assertAccepted(await batch('mailers', { token: tenantToken('initrode'), body: { jobs: jobs.slice(0, RATE.burst) } }),
    'mailers', jobs.slice(0, RATE.burst));
});

test('two gateways on one Redis: a batch charges all its jobs to the shared limit', async () => {
  const config = await h.writeConfig(env.material, env.redis.port, OVERRIDES, 'jobgate-b.json');
  const gateB = await h.startJobgate(config);
  extraGates.push(gateB);
  const bearer = tenantToken('umbrella');
  assertAccepted(await batch('mailers', { token: bearer, body: { jobs: [1, 2, 3, 4].map((n) => welcome(n)) } }),
    'mailers', [1, 2, 3, 4].map((n) => welcome(n)));
  // Gate B's own bucket is full; Redis knows 4 of 5 are spent.
  await h.assertRejected(env, 429, 'rate-limited', () => h.h2Request(gateB.base, { method: 'POST',
    path: '/v1/queues/mailers/jobs:batch', headers: h.jobHeaders(bearer),
    body: { jobs: [welcome(5), welcome(6)] } }));
  const one = await h.h2Request(gateB.base, { method: 'POST', path: '/v1/queues/mailers/jobs:batch',
    headers: h.jobHeaders(bearer), body: { jobs: [welcome(7)] } });
  assertAccepted(one, 'mailers', [welcome(7)]);
  await gateB.stop();
});

test('a batch over the queue\'s max_depth: 503 queue-full with Retry-After 5, nothing written, no rate charged',
  async () => {
    await env.client.del('resque:queue:reports');
    const bearer = tenantToken('hooli');
    assertAccepted(await batch('reports', { token: bearer, body: { jobs: [report(1), report(2)] } }),
      'reports', [report(1), report(2)]);
    // 2 + 2 > 3. The snapshot covers the tenant's rate key: it must not move.
    const res = await h.assertRejected(env, 503, 'queue-full', () => batch('reports', { token: bearer,
      body: { jobs: [report(3), report(4)] } }));
    assert.equal(res.headers['retry-after'], '5');
    // 2 + 1 = 3 fits.
    assertAccepted(await batch('reports', { token: bearer, body: { jobs: [report(3)] } }), 'reports', [report(3)]);
    assert.equal((await h.queueContents(env.client, 'reports')).length, MAX_DEPTH);
    // Now full for a single job too.
    await h.assertRejected(env, 503, 'queue-full', () => h.enqueue(env, 'reports', { token, body: report(4) }));
    assert.deepEqual((await h.openQueue(env, 'reports')).map((job) => job.args[0].n), [1, 2, 3]);
  });

/* ---------- The single endpoint's refusals ---------- */

test('authentication and authorization: 401, 403 and 404 as for a single job, nothing written', async () => {
  const body = { jobs: [welcome(1)] };
  for (const protocol of ['h2c', 'http1']) {
    await h.assertRejected(env, 401, 'missing-token',
      () => batch('mailers', { protocol, headers: h.jobHeaders(undefined), body }));
    const invalid = await h.assertRejected(env, 401, 'invalid-token',
      () => batch('mailers', { protocol, token: 'not.a.token', body }));
    assert.match(String(invalid.headers['www-authenticate']), /^Bearer\b.*error="invalid_token"/);
    await h.assertRejected(env, 401, 'invalid-token', () => batch('mailers', { protocol,
      token: env.token('HS256', { exp: h.nowSeconds() - 3600 }), body }));
    // An unknown queue without a valid token is 401 too; with one, 404.
    await h.assertRejected(env, 401, 'invalid-token', () => batch('nosuch', { protocol, token: 'x', body }));
    await h.assertRejected(env, 404, 'unknown-queue', () => batch('nosuch', { protocol, body }));
    // A scope for another tier, and a tenant the queue does not serve.
    const forbidden = await h.assertRejected(env, 403, 'insufficient-scope', () => batch('mailers', { protocol,
      token: env.token('HS256', { scope: 'tier:bulk' }), body }));
    assert.match(String(forbidden.headers['www-authenticate']), /error="insufficient_scope"/);
    await h.assertRejected(env, 403, 'insufficient-scope', () => batch('invoices', { protocol,
      token: env.token('HS256', { tenant: 'globex', scope: 'tier:critical' }),
      body: { jobs: [{ class: 'SendInvoice', args: [] }] } }));
  }
});

test('other methods on the batch path: 405 with Allow: POST; near-miss paths: 404', async () => {
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    for (const protocol of ['h2c', 'http1']) {
      const res = await h.assertRejected(env, 405, 'method-not-allowed', () => batch('mailers', { protocol, method,
        body: method === 'GET' ? undefined : { jobs: [welcome(1)] } }));
      assert.equal(res.headers.allow, 'POST');
    }
  }
  for (const target of ['/v1/queues/mailers/jobs:batchx', '/v1/queues/mailers/jobs:Batch',
    '/v1/queues/mailers/jobs:batch/', '/v1/queues/mailers/jobs:', '/v1/queues/mailers:batch',
    '/v1/queues//jobs:batch']) {
    await h.assertRejected(env, 404, 'not-found', () => h.send(env, 'h2c', { method: 'POST', path: target,
      headers: h.jobHeaders(token), body: { jobs: [welcome(1)] } }));
  }
});

test('Content-Type not JSON: 415; a body over the queue\'s max_body_bytes: 413 payload-too-large', async () => {
  await h.assertRejected(env, 415, 'unsupported-media-type', () => batch('mailers',
    { headers: h.jobHeaders(token, { 'content-type': 'text/plain' }), body: { jobs: [welcome(1)] } }));
  // reports takes at most 64 KiB per request (config/example.json).
  const limit = env.config.config.queues.reports.max_body_bytes;
  const jobs = Array.from({ length: 4 }, (_, i) => ({ class: 'BuildReport', args: ['r'.repeat(limit / 4), i] }));
  for (const protocol of ['h2c', 'http1']) {
    await h.assertRejected(env, 413, 'payload-too-large', () => batch('reports', { protocol, body: { jobs } }));
  }
});
