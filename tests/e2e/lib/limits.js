'use strict';
/*
 * Helpers for the flood and abuse control tests (limits.test.js, idempotency.test.js,
 * replicas.test.js): tokens for a named tenant, the RateLimit headers, the Redis keys
 * jobgate keeps for rates and idempotency keys, the job ids stored in a queue, the batch
 * endpoint, and a second jobgate process sharing one environment's Redis.
 */
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./harness');

const NAMESPACE = 'resque';

/** A good token for tenant (scope tier:standard unless given). */
function tenantToken(env, tenant, scope = 'tier:standard') {
  return env.token('HS256', { tenant, scope, sub: `svc-${tenant}` });
}

/** The Redis key of a tenant's shared GCRA state. */
function rateKey(tenant, namespace = NAMESPACE) {
  return `${namespace}:jobgate:rate:${tenant}`;
}

/** The Redis key of an idempotency key: <ns>:jobgate:idempotency:<hex sha256(tenant NUL key)>. */
function idempotencyRedisKey(tenant, key, namespace = NAMESPACE) {
  const digest = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(tenant), Buffer.from([0]),
    Buffer.from(key)])).digest('hex');
  return `${namespace}:jobgate:idempotency:${digest}`;
}

/** RateLimit-Policy as the contract spells it for a tenant rate. */
function expectedPolicy(burst, perSecond) {
  return `"tenant";q=${burst};w=${Math.max(1, Math.ceil(burst / perSecond))}`;
}

/** Parses a RateLimit header ("tenant";r=<int>;t=<int>); fails the test when malformed. */
function parseRateLimit(value) {
  const match = /^"tenant";r=(\d+);t=(\d+)$/.exec(String(value));
  assert.ok(match, `RateLimit header malformed: ${value}`);
  return { r: Number(match[1]), t: Number(match[2]) };
}

/** Retry-After as whole seconds >= 1; fails the test otherwise. */
function retryAfterSeconds(res) {
  const value = String(res.headers['retry-after']);
  assert.match(value, /^[1-9]\d*$/, `Retry-After must be an integer >= 1, got ${value}`);
  return Number(value);
}

/** Checks a 429 rate-limited answer's headers for a tenant of the given rate. */
function assertRateLimited(res, { burst, perSecond }) {
  h.assertProblem(res, 429, 'rate-limited');
  const retry = retryAfterSeconds(res);
  assert.equal(res.headers['ratelimit-policy'], expectedPolicy(burst, perSecond));
  const { r, t } = parseRateLimit(res.headers.ratelimit);
  assert.equal(r, 0, `RateLimit remaining on a 429: ${res.headers.ratelimit}`);
  const window = Math.max(1, Math.ceil(burst / perSecond));
  assert.ok(t >= 1 && t <= window, `RateLimit t=${t} should be 1..${window} (the bucket is empty)`);
  // The next job is possible after one interval; Retry-After never asks for more than a refill.
  assert.ok(retry <= window, `Retry-After ${retry} exceeds the window ${window}`);
  return retry;
}

/** A single job for mailers. */
const job = (tag) => ({ class: 'SendWelcomeEmail', args: [tag] });

/** POST a batch to queue: opts { token, body, headers, session, protocol }. */
function enqueueBatch(env, queue, { protocol = 'h2c', token, body, headers, ...rest } = {}) {
  return h.send(env, protocol, { method: 'POST', path: `/v1/queues/${queue}/jobs:batch`,
    headers: headers || h.jobHeaders(token), body, ...rest });
}

/** The job ids of a queue's stored payloads (the envelope, args[0], carries the id). */
async function storedIds(client, queue, namespace = NAMESPACE) {
  const payloads = await h.queueContents(client, queue, namespace);
  return payloads.map((payload) => {
    const parsed = JSON.parse(payload);
    assert.equal(typeof parsed.args[0].id, 'string', `no id in the envelope: ${payload.slice(0, 200)}`);
    return parsed.args[0].id;
  });
}

/**
 * Sends jobs one after another on one h2c session until the first non-202 answer (or
 * max requests). Before each request it snapshots Redis, so the first rejection can be
 * compared with the state just before it. Resolves { accepted: [responses], rejected:
 * response or null, before: snapshot before the rejected one, elapsedMs: from the first
 * request's send to the rejection's answer }.
 */
async function sendUntilRejected(env, { token, queue = 'mailers', max = 100, tag = 'job' }) {
  const session = await h.h2Connect(env.gate.base);
  const accepted = [];
  let started = null;
  try {
    for (let i = 0; i < max; i++) {
      const before = await env.snapshot();
      if (started === null) started = process.hrtime.bigint();
      const res = await h.enqueue(env, queue, { session, token, body: job(`${tag}-${i}`) });
      if (res.status !== 202) {
        return { accepted, rejected: res, before,
          elapsedMs: Number(process.hrtime.bigint() - started) / 1e6 };
      }
      accepted.push(res);
    }
  } finally {
    session.close();
  }
  return { accepted, rejected: null, before: null,
    elapsedMs: Number(process.hrtime.bigint() - started) / 1e6 };
}

/**
 * A second jobgate on env's Redis and key material, with its own listeners. overrides
 * are merged into the same config the harness derives; returns the gate (stop() it).
 */
async function startReplica(env, overrides, name) {
  const config = await h.writeConfig(env.material, env.redis.port, overrides, name);
  return h.startJobgate(config);
}

module.exports = { NAMESPACE, assertRateLimited, enqueueBatch, expectedPolicy, idempotencyRedisKey, job,
  parseRateLimit, rateKey, retryAfterSeconds, sendUntilRejected, startReplica, storedIds, tenantToken };
