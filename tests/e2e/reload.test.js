'use strict';
/*
 * SIGHUP reloads the config, its schemas and keys while serving: new queues, classes
 * and schemas take effect on every loop; a config that does not load, or that changes
 * what needs a restart, is refused and the running one stays.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

let env;
let original;

before(async () => {
  env = await h.setupEnvironment();
  original = fs.readFileSync(env.config.path, 'utf8');
});

after(async () => {
  if (env) await env.teardown();
});

function rewriteConfig(change) {
  const config = JSON.parse(original);
  change(config);
  fs.writeFileSync(env.config.path, JSON.stringify(config, null, 2));
}

/* Sends SIGHUP and waits for jobgate's verdict in its log. */
async function reload() {
  const seen = env.gate.logs.length;
  env.gate.process.kill('SIGHUP');
  for (let i = 0; i < 200; i++) {
    const verdict = env.gate.logs.slice(seen).find((l) => l.event === 'config' &&
      /^(reloaded|reload refused)/.test(l.message || ''));
    if (verdict) return verdict.message;
    await h.sleep(10);
  }
  throw new Error(`no reload verdict in the log:\n${env.gate.stderr}`);
}

/* Enqueues over several fresh connections, so that every loop's answer is seen. */
async function statuses(queue, body, token) {
  const seen = [];
  for (let i = 0; i < 6; i++) seen.push((await h.enqueue(env, queue, { token, body })).status);
  return seen;
}

const audit = { class: 'AuditLog', args: [{ event: 'login' }] };

test('a new queue with a new class and schema works after SIGHUP, on every loop', async () => {
  const token = env.token('HS256', { scope: 'queue:audit' });
  assert.deepEqual([...new Set(await statuses('audit', audit, token))], [404]);

  const schema = path.join(env.material.dir, 'AuditLog.json');
  fs.writeFileSync(schema, JSON.stringify({ type: 'array', prefixItems: [{ type: 'object',
    properties: { event: { enum: ['login', 'logout'] } }, required: ['event'] }] }));
  rewriteConfig((config) => {
    config.classes.AuditLog = { schema };
    config.queues.audit = { tier: 'bulk', classes: ['AuditLog'], tenants: ['*'] };
  });
  assert.match(await reload(), /^reloaded/);
  await h.sleep(50);

  assert.deepEqual([...new Set(await statuses('audit', audit, token))], [202]);
  const bad = await h.enqueue(env, 'audit', { token,
    body: { class: 'AuditLog', args: [{ event: 'sudo' }] } });
  h.assertProblem(bad, 422, 'invalid-arguments');
  assert.equal((await h.queueContents(env.client, 'audit')).length, 6);
});

test('a config that does not load is refused and the running one keeps serving', async () => {
  fs.writeFileSync(env.config.path, '{"threads": 2,');
  assert.match(await reload(), /^reload refused: .* does not load/);
  const token = env.token('HS256', { scope: 'queue:audit' });
  assert.deepEqual([...new Set(await statuses('audit', audit, token))], [202]);
  assert.ok(env.gate.alive());
});

test('a change that needs a restart is refused, naming what changed', async () => {
  rewriteConfig((config) => { config.redis.namespace = 'other'; });
  assert.match(await reload(), /^reload refused: "redis" changed/);
  rewriteConfig((config) => { config.threads = 1; });
  assert.match(await reload(), /^reload refused: "threads" changed/);
  // The audit queue from the first reload is still there: the refusals changed nothing.
  const token = env.token('HS256', { scope: 'queue:audit' });
  assert.deepEqual([...new Set(await statuses('audit', audit, token))], [202]);
});

test('a key removed by a reload stops its tokens at once, cached or not', async () => {
  const token = env.token('ES256');
  const body = { class: 'SendWelcomeEmail', args: [1] };
  assert.equal((await h.enqueue(env, 'mailers', { token, body })).status, 202);
  rewriteConfig((config) => {
    config.auth.keys = config.auth.keys.filter((key) => key.alg !== 'ES256');
  });
  assert.match(await reload(), /^reloaded/);
  await h.sleep(50);
  const after = await statuses('mailers', body, token);
  assert.deepEqual([...new Set(after)], [401]);
});
