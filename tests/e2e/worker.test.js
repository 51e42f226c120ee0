'use strict';
/*
 * A stock node-resque Worker (from npm) runs a job enqueued through jobgate over
 * HTTP/2, and its perform receives exactly the producer's arguments.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Worker, Queue } = require('node-resque');
const h = require('./lib/harness');

let env;
let worker;

before(async () => {
  env = await h.setupEnvironment();
});

after(async () => {
  if (worker) await worker.end().catch(() => {});
  if (env) await env.teardown();
});

function connection() {
  return { pkg: 'ioredis', host: '127.0.0.1', port: env.redis.port, namespace: 'resque', database: 0 };
}

test('a node-resque worker runs a job enqueued over HTTP/2 with exactly the producer\'s args', { timeout: 20000 }, async () => {
  const producerArgs = [
    { user_id: 42, email: 'ada@example.test', profile: { name: 'Ada Lovelace ✓', langs: ['en', 'fr'] } },
    'Zoë 山田 🎉',
    7,
    -2.5,
    true,
    null,
    [1, [2, [3]]],
  ];
  const performed = [];
  let resolveRan;
  const ran = new Promise((resolve) => { resolveRan = resolve; });
  const failures = [];

  worker = new Worker({ connection: connection(), queues: ['mailers'], timeout: 50 }, {
    SendWelcomeEmail: {
      perform: async (...args) => {
        performed.push(args);
        resolveRan(args);
        return 'sent';
      },
    },
  });
  worker.on('failure', (queue, job, failure) => failures.push(String(failure)));
  worker.on('error', (error) => failures.push(String(error)));
  await worker.connect();
  await worker.start();

  const res = await h.enqueue(env, 'mailers', { protocol: 'h2c', token: env.token(),
    body: { class: 'SendWelcomeEmail', args: producerArgs } });
  assert.equal(res.status, 202, res.text);

  let timer;
  const args = await Promise.race([ran, new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the worker did not run the job; failures: ${failures}`)), 10000);
  })]).finally(() => clearTimeout(timer));
  assert.deepEqual(args, producerArgs);
  assert.equal(performed.length, 1);

  // The worker took it off the queue and counted it as processed, not failed.
  const deadline = Date.now() + 3000;
  while (Number(await env.client.get('resque:stat:processed') || 0) < 1 && Date.now() < deadline) await h.sleep(20);
  assert.equal(await env.client.llen('resque:queue:mailers'), 0);
  assert.equal(Number(await env.client.get('resque:stat:processed')), 1);
  assert.equal(await env.client.llen('resque:failed'), 0);
  assert.deepEqual(failures, []);
  await worker.end();
  worker = null;
});

test('node-resque\'s own Queue sees the job jobgate wrote exactly as one it enqueued itself', { timeout: 20000 }, async () => {
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
    assert.deepEqual(byJobgate.args, byNodeResque.args);
    assert.deepEqual(Object.keys(byJobgate), ['class', 'args']);
    assert.equal(stored[1], JSON.stringify({ class: 'SendWelcomeEmail', args }));
    assert.deepEqual(await queue.queues(), ['mailers']);
    assert.equal(await queue.length('mailers'), 2);
  } finally {
    await env.client.del('resque:queue:mailers');
    await queue.end();
  }
});
