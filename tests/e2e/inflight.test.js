'use strict';
/*
 * The cap on writes in flight: while Redis holds a write, a loop already at
 * redis.max_in_flight answers 503 overloaded with Retry-After at once, writes
 * nothing for those jobs, and accepts again once Redis has answered.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let env;

before(async () => {
  env = await h.setupEnvironment({ overrides: { threads: 1,
    redis: { max_in_flight: 1, command_timeout_ms: 3000 } } });
});

after(async () => {
  if (env) await env.teardown();
});

test('past max_in_flight a job gets 503 overloaded and is not written', async () => {
  const token = env.token();
  const session = await h.h2Connect(env.gate.base);
  const send = (n) => h.enqueue(env, 'mailers', { token, session,
    body: { class: 'SendWelcomeEmail', args: [n] } });
  try {
    /* Hold every write in Redis for a moment, so the first one stays in flight. */
    await env.client.call('CLIENT', 'PAUSE', '700', 'WRITE');
    const first = send(0);
    await h.sleep(100);
    const rest = await Promise.all([1, 2, 3].map(send));
    for (const res of rest) {
      h.assertProblem(res, 503, 'overloaded');
      assert.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After on 503 overloaded');
    }
    assert.equal((await first).status, 202, 'the write in flight is confirmed');

    const after = await send(4);
    assert.equal(after.status, 202, 'accepted again once Redis answered');
    const stored = (await h.queueContents(env.client, 'mailers')).map((p) => JSON.parse(p).args[0].args[0]);
    assert.deepEqual(stored, [0, 4], 'only the accepted jobs are in Redis');
  } finally {
    session.close();
  }
});
