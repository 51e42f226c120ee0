'use strict';
/*
 * Jobs that arrive together are signed together: one signature over the Merkle tree of
 * the jobs drafted in one loop turn, at most envelope.jobs_per_signature of them, with
 * each job's proof in its envelope. Every job still opens on its own, a lone job is
 * signed alone, jobs_per_signature 1 signs every job alone, and a job whose stream is
 * reset while it waits to be signed leaves the rest of its batch whole.
 */
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const b = require('./lib/budgets');

const envs = [];

after(async () => {
  for (const env of envs) await env.teardown();
});

async function environment(envelope) {
  const env = await h.setupEnvironment({ overrides: { threads: 1, envelope } });
  envs.push(env);
  return env;
}

/** Sends count jobs at once on one HTTP/2 connection; all must be accepted. */
async function burst(env, count) {
  const token = env.token();
  const session = await h.h2Connect(env.gate.base);
  try {
    const answers = await Promise.all(Array.from({ length: count }, (_, n) => h.enqueue(env,
      'mailers', { token, session, body: { class: 'SendWelcomeEmail', args: [{ user_id: n + 1 }] } })));
    for (const res of answers) assert.equal(res.status, 202, res.text);
    return answers.map((res) => res.body.id);
  } finally {
    session.close();
  }
}

/** The stored jobs, opened, grouped by the signature they share. */
async function bySignature(env) {
  const groups = new Map();
  for (const job of await h.openQueue(env, 'mailers')) {
    const { sig } = job.envelope;
    if (!groups.has(sig)) groups.set(sig, []);
    groups.get(sig).push(job);
  }
  return groups;
}

test('a burst on one connection is signed in batches of at most jobs_per_signature', async () => {
  const env = await environment({ jobs_per_signature: 8 });
  const ids = await burst(env, 64);
  const groups = await bySignature(env);

  const jobs = [...groups.values()].flat();
  assert.deepEqual(jobs.map((job) => job.envelope.id).sort(), [...ids].sort());
  assert.ok(groups.size < 64, 'some jobs share a signature');
  for (const group of groups.values()) {
    const { size } = group[0].envelope.proof;
    assert.ok(size >= 1 && size <= 8, `a tree of ${size} leaves`);
    // Every leaf of every tree was written: each index once, none missing.
    assert.deepEqual(group.map((job) => job.envelope.proof.index).sort((a, b) => a - b),
      Array.from({ length: size }, (_, i) => i));
    for (const job of group) assert.equal(job.envelope.proof.size, size);
  }
});

test('a job that comes alone is signed alone, at once', async () => {
  const env = envs[0];
  await env.client.del('resque:queue:mailers');
  const started = Date.now();
  await burst(env, 1);
  assert.ok(Date.now() - started < 1000, 'nothing waits for a batch to fill');
  const [job] = await h.openQueue(env, 'mailers');
  assert.deepEqual(job.envelope.proof, { index: 0, path: [], size: 1 });
});

test('jobs_per_signature 1 signs every job alone', async () => {
  const env = await environment({ jobs_per_signature: 1 });
  await burst(env, 24);
  const groups = await bySignature(env);
  assert.equal(groups.size, 24);
  for (const [job] of groups.values()) {
    assert.deepEqual(job.envelope.proof, { index: 0, path: [], size: 1 });
  }
});

/*
 * Sends count jobs on one connection with every other stream reset at once, through
 * lib/h2_burst.py, so that each reset reaches jobgate in the same read as its job,
 * while the job waits to be signed. Resolves the ids of the jobs answered 202.
 */
async function burstWithResets(env, count) {
  const streams = await b.h2Burst(env.gate, { path: '/v1/queues/mailers/jobs', token: env.token(),
    count, resetEvery: 2, template: '{"class":"SendWelcomeEmail","args":[{"user_id":{n}}]}' });
  for (const stream of streams.filter((s) => !s.reset)) assert.equal(stream.status, 202, stream.body);
  return streams.filter((s) => s.status === 202).map((s) => JSON.parse(s.body).id);
}

test('streams reset while their jobs wait to be signed: the rest of the batch is written', async () => {
  const env = envs[0];
  await env.client.del('resque:queue:mailers');
  const answered = await burstWithResets(env, 64);
  assert.ok(answered.length >= 32);

  // Every job answered 202 is in Redis and opens. A reset that came after its job was
  // signed (the job filled a batch) was too late: that job is written too. The others
  // never were.
  const stored = await h.openQueue(env, 'mailers');
  const storedIds = new Set(stored.map((job) => job.envelope.id));
  for (const id of answered) assert.ok(storedIds.has(id), `job ${id} answered 202 is in Redis`);
  assert.ok(stored.length < 64, `${stored.length} of 64 written: resets dropped jobs unsigned`);

  // And jobgate goes on signing.
  await env.client.del('resque:queue:mailers');
  const ids = await burst(env, 8);
  assert.deepEqual((await h.openQueue(env, 'mailers')).map((job) => job.envelope.id).sort(),
    [...ids].sort());
});
