'use strict';
/*
 * SIGTERM drains: jobgate stops accepting connections at once, but a request already
 * in flight still gets its answer once Redis has confirmed the write, and the process
 * then exits 0.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let env;

before(async () => {
  env = await h.setupEnvironment({ overrides: { redis: { command_timeout_ms: 5000 } } });
});

after(async () => {
  if (env) await env.teardown();
});

test('a write in flight at SIGTERM is answered 202, then jobgate exits 0', async () => {
  const token = env.token();
  const session = await h.h2Connect(env.gate.base);
  await env.client.call('CLIENT', 'PAUSE', '800', 'WRITE');
  const inFlight = h.enqueue(env, 'mailers', { token, session,
    body: { class: 'SendWelcomeEmail', args: ['in flight'] } });
  await h.sleep(150);

  env.gate.process.kill('SIGTERM');
  await h.sleep(100);
  await assert.rejects(h.h1Request(env.gate.base, { path: '/healthz', timeoutMs: 1000 }),
    'a new connection is refused while draining');

  const res = await inFlight;
  assert.equal(res.status, 202, res.text);
  session.close();
  assert.equal(await env.gate.stop(), 0, `exit status; log:\n${env.gate.stderr}`);
  await h.assertQueueHolds(env, 'mailers', ['{"class":"SendWelcomeEmail","args":["in flight"]}']);
  assert.ok(env.gate.logs.some((l) => l.event === 'serve' && l.message === 'stopped'));
});
