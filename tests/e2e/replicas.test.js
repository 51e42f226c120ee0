'use strict';
/*
 * Two jobgate processes sharing one redis-server enforce one limit per tenant: the GCRA
 * state lives in Redis (<ns>:jobgate:rate:<tenant>), so a flood through both replicas
 * gets the tenant's allowance once, not twice, and every 202 is a job in Redis. An
 * idempotency key used on one replica is replayed by the other.
 */
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const l = require('./lib/limits');

const FLOOD = { perSecond: 200, burst: 20 };
const PAIR = { perSecond: 0.5, burst: 4 };
const FLOOD_MS = 3000;
const SESSIONS_PER_REPLICA = 3;
const STREAMS_PER_SESSION = 6;

const OVERRIDES = { tenants: {
  flood: { jobs_per_second: FLOOD.perSecond, burst: FLOOD.burst },
  pair: { jobs_per_second: PAIR.perSecond, burst: PAIR.burst },
} };

let env;
let replica;

before(async () => {
  env = await h.setupEnvironment({ overrides: OVERRIDES });
  replica = await l.startReplica(env, OVERRIDES, 'replica.json');
  assert.notEqual(replica.httpPort, env.gate.httpPort);
});

after(async () => {
  if (replica) await replica.stop().catch(() => {});
  if (env) await env.teardown();
});

beforeEach(async () => {
  await env.client.flushall();
});

test('a burst through two replicas: the second replica refuses what the first already took', async () => {
  const token = l.tenantToken(env, 'pair');
  const gates = [env.gate, replica];
  const accepted = [];
  const started = Date.now();
  let rejected = null;
  // Alternate: each replica alone has seen at most half the burst when the bucket is empty.
  for (let i = 0; i < PAIR.burst + 4 && !rejected; i++) {
    const gate = gates[i % 2];
    const res = await h.h2Request(gate.base, { method: 'POST', path: '/v1/queues/mailers/jobs',
      headers: h.jobHeaders(token), body: l.job(`pair-${i}`) });
    if (res.status === 202) accepted.push(res);
    else rejected = res;
  }
  const refilled = Math.floor(((Date.now() - started) / 1000) * PAIR.perSecond);
  assert.ok(rejected, `${accepted.length} accepted through two replicas and none refused`);
  assert.ok(accepted.length >= PAIR.burst, `only ${accepted.length} of a burst of ${PAIR.burst}`);
  assert.ok(accepted.length <= PAIR.burst + refilled,
    `${accepted.length} accepted; the shared bucket allows ${PAIR.burst} + ${refilled}`);
  l.assertRateLimited(rejected, PAIR);
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), accepted.map((res) => res.body.id));
});

/**
 * Sends jobs through one replica from `sessions` h2c connections, `streams` requests in
 * flight on each, until deadline. Records every send time and answer.
 */
async function flood(gate, token, deadline, record, label) {
  const sessions = await Promise.all(Array.from({ length: SESSIONS_PER_REPLICA },
    () => h.h2Connect(gate.base)));
  let n = 0;
  const loop = async (session) => {
    while (Date.now() < deadline) {
      const sentAt = process.hrtime.bigint();
      const res = await h.enqueue(env, 'mailers', { session, token, body: l.job(`${label}-${n++}`) });
      record.push({ gate: label, sentAt, status: res.status, type: res.body?.type, id: res.body?.id,
        text: res.status === 202 || res.status === 429 ? '' : res.text });
    }
  };
  try {
    await Promise.all(sessions.flatMap((session) =>
      Array.from({ length: STREAMS_PER_SESSION }, () => loop(session))));
  } finally {
    for (const session of sessions) session.close();
  }
}

test('a flood through two replicas gets the tenant\'s allowance once, and every 202 is in Redis', async (t) => {
  const token = l.tenantToken(env, 'flood');
  const record = [];
  const deadline = Date.now() + FLOOD_MS;
  await Promise.all([flood(env.gate, token, deadline, record, 'a'), flood(replica, token, deadline, record, 'b')]);

  const sendTimes = record.map((r) => r.sentAt);
  const first = sendTimes.reduce((a, b) => (a < b ? a : b));
  const last = sendTimes.reduce((a, b) => (a > b ? a : b));
  const elapsed = Number(last - first) / 1e9;
  const allowance = FLOOD.burst + FLOOD.perSecond * elapsed;

  const unexpected = record.filter((r) => r.status !== 202 && !(r.status === 429 && r.type === 'urn:jobgate:problem:rate-limited'));
  assert.deepEqual(unexpected.slice(0, 5), [], `answers other than 202 and 429 rate-limited (${unexpected.length})`);

  const byGate = (gate) => record.filter((r) => r.gate === gate);
  const acceptedIds = record.filter((r) => r.status === 202).map((r) => r.id);
  const storedIds = await l.storedIds(env.client, 'mailers');
  const summary = ['a', 'b'].map((g) => `${g}: ${byGate(g).length} sent, ` +
    `${byGate(g).filter((r) => r.status === 202).length} accepted`).join('; ');
  t.diagnostic(`${elapsed.toFixed(2)} s; allowance ${allowance.toFixed(0)}; ${storedIds.length} jobs in Redis; ${summary}`);

  // Every 202 is a job in Redis, and every job in Redis was answered 202.
  assert.equal(new Set(acceptedIds).size, acceptedIds.length, 'an id answered twice');
  assert.deepEqual([...storedIds].sort(), [...acceptedIds].sort());

  // One limit for both: within 10% of burst + rate * elapsed.
  assert.ok(Math.abs(storedIds.length - allowance) <= 0.1 * allowance,
    `${storedIds.length} jobs in Redis; the shared limit allows ${allowance.toFixed(0)} (±10%)`);

  // Each replica alone was offered far more than the limit, and both let jobs through:
  // two separate limits would have let about twice the allowance through.
  for (const gate of ['a', 'b']) {
    const sent = byGate(gate);
    assert.ok(sent.length > 1.5 * allowance, `replica ${gate} was sent only ${sent.length} requests`);
    const through = sent.filter((r) => r.status === 202).length;
    assert.ok(through >= 0.1 * allowance, `replica ${gate} accepted only ${through} jobs`);
  }
  assert.ok(await env.client.exists(l.rateKey('flood')), 'the shared rate key');
});

test('an idempotency key used on one replica is replayed by the other', async () => {
  const token = l.tenantToken(env, 'shared');
  const body = JSON.stringify(l.job('replayed'));
  const headers = h.jobHeaders(token, { 'idempotency-key': 'cross-replica' });
  const first = await h.h2Request(env.gate.base, { method: 'POST', path: '/v1/queues/mailers/jobs', headers, body });
  assert.equal(first.status, 202, first.text);
  assert.equal(first.headers['idempotent-replayed'], undefined);
  const again = await h.h2Request(replica.base, { method: 'POST', path: '/v1/queues/mailers/jobs', headers, body });
  assert.equal(again.status, 202, again.text);
  assert.equal(again.headers['idempotent-replayed'], 'true');
  assert.equal(again.text, first.text);
  const reused = await h.h2Request(replica.base, { method: 'POST', path: '/v1/queues/mailers/jobs', headers,
    body: JSON.stringify(l.job('other')) });
  h.assertProblem(reused, 422, 'idempotency-key-reused');
  assert.deepEqual(await l.storedIds(env.client, 'mailers'), [first.body.id]);
});
