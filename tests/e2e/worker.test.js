'use strict';
/*
 * A stock node-resque Worker (from npm), through the JavaScript worker kit, runs a job
 * enqueued through jobgate over HTTP/2: its perform receives exactly the producer's
 * arguments, the secret among them opened, while the secret's plaintext is nowhere in
 * Redis, in jobgate's logs or in any answer.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Worker, Queue } = require('node-resque');
const h = require('./lib/harness');

const RESET_SCHEMA = path.join(h.REPO, 'schemas', 'SendPasswordReset.json');
const SECRET = 'rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73';

let env;
let worker;

before(async () => {
  env = await h.setupEnvironment({
    overrides: { classes: { SendPasswordReset: { schema: RESET_SCHEMA } } },
  });
});

after(async () => {
  if (worker) await worker.end().catch(() => {});
  if (env) await env.teardown();
});

function connection() {
  return { pkg: 'ioredis', host: '127.0.0.1', port: env.redis.port, namespace: 'resque', database: 0 };
}

/** Starts a node-resque worker on mailers with jobs; returns the failures it reports. */
async function startWorker(jobs) {
  const failures = [];
  worker = new Worker({ connection: connection(), queues: ['mailers'], timeout: 50 }, jobs);
  worker.on('failure', (queue, job, failure) => failures.push(String(failure)));
  worker.on('error', (error) => failures.push(String(error)));
  await worker.connect();
  await worker.start();
  return failures;
}

async function within(promise, ms, what) {
  let timer;
  return Promise.race([promise, new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(what())), ms);
  })]).finally(() => clearTimeout(timer));
}

/** Every value in Redis, as one string to search. */
async function keyspaceText() {
  return JSON.stringify(await env.snapshot());
}

test('a node-resque worker runs a job with a secret: opened for perform, sealed everywhere else', { timeout: 20000 }, async () => {
  const producerArgs = [{ user_id: 42, email: 'ada@example.test', reset_token: SECRET,
    expires_at: '2026-12-03T21:00:00Z' }];
  const verifier = await h.verifierFor(env.material);
  let resolveRan;
  const ran = new Promise((resolve) => { resolveRan = resolve; });
  const failures = await startWorker({
    SendPasswordReset: verifier.job('SendPasswordReset', async function perform(...args) {
      resolveRan({ args, jobgate: this.jobgate });
      return 'sent';
    }),
  });

  const res = await h.enqueue(env, 'mailers', { protocol: 'h2c', token: env.token(),
    body: { class: 'SendPasswordReset', args: producerArgs } });
  assert.equal(res.status, 202, res.text);
  assert.ok(!res.text.includes(SECRET), 'the answer holds the secret');

  const { args, jobgate } = await within(ran, 10000,
    () => `the worker did not run the job; failures: ${failures}`);
  assert.deepEqual(args, producerArgs);
  assert.equal(jobgate.id, res.body.id);
  assert.equal(jobgate.queue, 'mailers');
  assert.equal(jobgate.tenant, 'acme');

  const deadline = Date.now() + 3000;
  while (Number(await env.client.get('resque:stat:processed') || 0) < 1 && Date.now() < deadline) await h.sleep(20);
  assert.equal(Number(await env.client.get('resque:stat:processed')), 1);
  assert.equal(await env.client.llen('resque:failed'), 0);
  assert.deepEqual(failures, []);
  await worker.end();
  worker = null;

  // The job again, left in the queue: the whole keyspace holds it only sealed.
  const again = await h.enqueue(env, 'mailers', { protocol: 'h2', token: env.token(),
    body: { class: 'SendPasswordReset', args: producerArgs } });
  assert.equal(again.status, 202, again.text);
  const keyspace = await keyspaceText();
  assert.ok(keyspace.includes(again.body.id), 'the job is in Redis');
  assert.ok(!keyspace.includes(SECRET), 'the secret is in Redis in the clear');
  assert.ok(!keyspace.includes(Buffer.from(SECRET).toString('base64')), 'the secret is in Redis in base64');
  const [stored] = await h.openQueue(env, 'mailers');
  assert.deepEqual(stored.envelope.sealed, ['/0/reset_token']);
  assert.deepEqual(Object.keys(stored.envelope.args[0].reset_token), ['ct', 'epk', 'kid', 'nonce']);
  assert.deepEqual(stored.args, producerArgs);

  // A request that fails validation after the secret was read does not echo it either.
  const refused = await h.enqueue(env, 'mailers', { token: env.token(),
    body: { class: 'SendPasswordReset', args: [{ ...producerArgs[0], user_id: 0 }] } });
  assert.equal(refused.status, 422);
  assert.ok(!refused.text.includes(SECRET));
  assert.ok(!env.gate.stderr.includes(SECRET), 'the secret is in jobgate\'s log');
  await env.client.del('resque:queue:mailers');
});

test('node-resque\'s own Queue sees the job jobgate wrote as a Resque job like its own', { timeout: 20000 }, async () => {
  const queue = new Queue({ connection: connection() });
  await queue.connect();
  try {
    const args = [{ user_id: 9, tags: ['a'] }, 'x'];
    await queue.enqueue('mailers', 'SendWelcomeEmail', args);
    const res = await h.enqueue(env, 'mailers', { protocol: 'h2', token: env.token(),
      body: { class: 'SendWelcomeEmail', args } });
    assert.equal(res.status, 202, res.text);
    const stored = await h.queueContents(env.client, 'mailers');
    assert.equal(stored.length, 2);
    const [byNodeResque, byJobgate] = stored.map((p) => JSON.parse(p));
    // node-resque adds its own "queue" member; class and args are what Resque reads.
    assert.equal(byJobgate.class, byNodeResque.class);
    assert.deepEqual(Object.keys(byJobgate), ['class', 'args']);
    assert.equal(byJobgate.args.length, 1, 'the envelope is the one argument');
    const opened = await h.openPayload(env.material, stored[1], 'mailers');
    assert.deepEqual(opened.args, byNodeResque.args);
    assert.deepEqual(await queue.queues(), ['mailers']);
    assert.equal(await queue.length('mailers'), 2);
  } finally {
    await env.client.del('resque:queue:mailers');
    await queue.end();
  }
});

test('a job written into Redis without jobgate fails in node-resque as unsigned, and perform never runs', { timeout: 20000 }, async () => {
  const queue = new Queue({ connection: connection() });
  await queue.connect();
  const verifier = await h.verifierFor(env.material);
  let performed = 0;
  const failed = new Promise((resolve) => {
    startWorker({
      SendWelcomeEmail: verifier.job('SendWelcomeEmail', async () => { performed++; }),
    }).then(() => worker.on('failure', (q, job, failure) => resolve(String(failure))));
  });
  try {
    await queue.enqueue('mailers', 'SendWelcomeEmail', [{ user_id: 1 }]);
    const failure = await within(failed, 10000, () => 'the forged job was not refused');
    assert.match(failure, /jobgate: unsigned:/);
    assert.equal(performed, 0);
    assert.equal(await env.client.llen('resque:failed'), 1);
  } finally {
    await worker.end();
    worker = null;
    await queue.end();
  }
});
