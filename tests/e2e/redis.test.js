'use strict';
/*
 * Redis down, slow or unreachable: 503 redis-unavailable with Retry-After, /readyz
 * 503, reconnection once Redis is back, and never a 202 for a write Redis did not
 * confirm.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const h = require('./lib/harness');

const COMMAND_TIMEOUT_MS = 300;
let env;
let token;
const job = (tag) => ({ class: 'SendWelcomeEmail', args: [tag] });

before(async () => {
  env = await h.setupEnvironment({ overrides: { redis: { command_timeout_ms: COMMAND_TIMEOUT_MS,
    connect_timeout_ms: 300, reconnect_min_ms: 20, reconnect_max_ms: 300 } } });
  token = env.token();
});

after(async () => {
  if (env) await env.teardown();
});

async function waitFor(what, predicate, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await h.sleep(25);
  }
}

/** /readyz on a fresh connection each time, so that either worker thread may answer. */
async function readyzStatuses(count) {
  const statuses = [];
  for (let i = 0; i < count; i++) statuses.push(await env.gate.readyz());
  return statuses;
}

/**
 * How many of the gateway's Redis connections have loaded the enqueue script (one per
 * worker thread once all are ready): readyz alone cannot tell, since each answer comes
 * from whichever thread took the connection.
 */
async function gatewayConnections() {
  const self = await env.client.call('CLIENT', 'ID');
  const list = await env.client.call('CLIENT', 'LIST');
  return list.split('\n').filter((line) => line && !line.startsWith(`id=${self} `) &&
    /\bcmd=(script|evalsha)\b/.test(line)).length;
}

async function waitAllThreadsReady() {
  const threads = env.config.config.threads;
  await waitFor(`${threads} gateway connections to Redis`, async () => (await gatewayConnections()) >= threads, 5000);
  await waitFor('/readyz 200', async () => (await readyzStatuses(4)).every((s) => s === 200), 5000);
}

function assertUnavailable(res) {
  h.assertProblem(res, 503, 'redis-unavailable');
  assert.match(String(res.headers['retry-after']), /^\d+$/, 'Retry-After in seconds');
}

async function assertEnqueueWorks(tag) {
  // A fresh connection per try: each worker thread has its own Redis connection.
  const res = await waitFor(`a 202 for ${tag}`, async () => {
    const r = await h.enqueue(env, 'mailers', { protocol: 'http1', token, body: job(tag) });
    if (r.status === 202) return r;
    assertUnavailable(r); // nothing but 503 while the gateway reconnects
    return null;
  }, 5000);
  assert.equal(res.status, 202);
  const stored = await h.storedJobs(env, 'mailers');
  assert.ok(stored.includes(JSON.stringify(job(tag))), `${tag} is not in Redis`);
}

test('while Redis is up: 202 and /readyz 200', { timeout: 20000 }, async () => {
  const res = await h.enqueue(env, 'mailers', { token, body: job('before') });
  assert.equal(res.status, 202, res.text);
  assert.deepEqual(await readyzStatuses(4), [200, 200, 200, 200]);
  await waitAllThreadsReady();
});

test('Redis stopped: 503 redis-unavailable with Retry-After, /readyz 503; back on the same port: 202 again', { timeout: 20000 }, async () => {
  env.client.disconnect();
  await env.redis.stop();
  try {
    await waitFor('/readyz 503 on every try', async () => (await readyzStatuses(4)).every((s) => s === 503), 3000);
    const ready = await h.send(env, 'http1', { method: 'GET', path: '/readyz' });
    assertUnavailable(ready);

    for (const protocol of ['h2c', 'http1', 'h2']) {
      const res = await h.enqueue(env, 'mailers', { protocol, token, body: job(`down-${protocol}`) });
      assertUnavailable(res);
    }
  } finally {
    await env.redis.start();
    env.client = env.redis.client();
  }
  await waitFor('/readyz 200 on every try', async () => (await readyzStatuses(4)).every((s) => s === 200), 5000);
  await assertEnqueueWorks('after-restart');
  // The rejected jobs were never written anywhere.
  const stored = await h.queueContents(env.client, 'mailers');
  assert.ok(!stored.some((p) => p.includes('down-')), 'a job refused with 503 is in Redis');
});

test('Redis restarted again at once: the next requests recover to 202', { timeout: 20000 }, async () => {
  env.client.disconnect();
  await env.redis.restart();
  env.client = env.redis.client();
  await assertEnqueueWorks('after-second-restart');
});

test('Redis forgot the enqueue script (SCRIPT FLUSH): at most a 503 that wrote nothing, then 202s on every thread', { timeout: 20000 }, async () => {
  await waitAllThreadsReady();
  await env.client.call('SCRIPT', 'FLUSH');
  const refused = [];
  let attempt = 0;
  await waitFor('4 accepted jobs in a row', async () => {
    for (let i = 0; i < 4; i++) {
      const tag = `flush-${attempt++}`;
      const res = await h.enqueue(env, 'mailers', { protocol: 'http1', token, body: job(tag) });
      if (res.status !== 202) {
        assertUnavailable(res);
        refused.push(tag);
        return false;
      }
    }
    return true;
  }, 5000);
  assert.ok(refused.length <= env.config.config.threads, `refused ${refused.length} times: ${refused}`);
  const stored = await h.storedJobs(env, 'mailers');
  for (const tag of refused) assert.ok(!stored.includes(JSON.stringify(job(tag))), `${tag} was refused but written`);
});

test('a write Redis does not answer in time gets 503, never 202 (CLIENT PAUSE WRITE)', { timeout: 20000 }, async () => {
  await waitAllThreadsReady();
  const pauseMs = 3000;
  await env.client.call('CLIENT', 'PAUSE', String(pauseMs), 'WRITE');
  try {
    const started = Date.now();
    const res = await h.enqueue(env, 'mailers', { token, body: job('paused') });
    const elapsed = Date.now() - started;
    assert.notEqual(res.status, 202, 'a write Redis had not confirmed was acknowledged');
    assertUnavailable(res);
    assert.ok(elapsed < pauseMs - 500,
      `the answer took ${elapsed} ms: the ${COMMAND_TIMEOUT_MS} ms command timeout did not fire`);
    // Not an early "not connected" answer: the write was sent and waited for.
    assert.ok(elapsed >= COMMAND_TIMEOUT_MS - 50, `the answer came after only ${elapsed} ms`);
  } finally {
    await env.client.call('CLIENT', 'UNPAUSE');
  }
  await assertEnqueueWorks('after-pause');
});

test('connections to Redis killed under load: every job answered 202 is in Redis', { timeout: 20000 }, async () => {
  await waitAllThreadsReady();
  const sessions = await Promise.all([0, 1, 2, 3].map(() => h.h2Connect(env.gate.base)));
  const accepted = [];
  const statuses = {};
  try {
    const killer = (async () => {
      for (let i = 0; i < 3; i++) {
        await h.sleep(15);
        await env.client.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes').catch(() => {});
      }
    })();
    const requests = [];
    for (let i = 0; i < 400; i++) {
      const tag = `load-${i}`;
      requests.push(h.enqueue(env, 'mailers', { session: sessions[i % sessions.length], token, body: job(tag) })
        .then((res) => {
          statuses[res.status] = (statuses[res.status] || 0) + 1;
          if (res.status === 202) accepted.push(tag);
          else assertUnavailable(res);
        }));
      if (i % 50 === 49) await h.sleep(10);
    }
    await Promise.all(requests);
    await killer;
  } finally {
    for (const s of sessions) s.close();
  }
  const stored = new Set(await h.storedJobs(env, 'mailers'));
  const lost = accepted.filter((tag) => !stored.has(JSON.stringify(job(tag))));
  assert.deepEqual(lost, [], `jobs answered 202 but missing from Redis (statuses ${JSON.stringify(statuses)})`);
  assert.ok(accepted.length > 0, `nothing was accepted: ${JSON.stringify(statuses)}`);
  await assertEnqueueWorks('after-kills');
});

/*
 * A Redis address where the TCP connect itself hangs (the listener's accept queue is
 * full and the kernel drops new SYNs): the connect deadline must fire, and the gateway
 * must stay up, answer 503, and connect once a real Redis appears on that port.
 */
/** Whether a TCP connect to port completes within ms. */
function connects(port, ms) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (value) => { clearTimeout(timer); socket.destroy(); resolve(value); };
    const timer = setTimeout(() => done(false), ms);
    socket.on('connect', () => done(true));
    socket.on('error', () => done(true)); // refused: not a hang either
  });
}

test('a Redis whose TCP connect hangs: the gateway stays up, answers 503, and recovers', { timeout: 20000 }, async (t) => {
  const port = await h.freePort();
  const blackhole = spawn(process.execPath, ['-e',
    `require('net').createServer(() => {}).listen({ port: ${port}, host: '127.0.0.1', backlog: 1 },` +
    ` () => process.stdout.write('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
  const fillers = [];
  let gate;
  let redis;
  try {
    await new Promise((resolve) => blackhole.stdout.once('data', resolve));
    blackhole.kill('SIGSTOP');
    for (let i = 0; i < 4; i++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      fillers.push(socket);
    }
    await h.sleep(100);
    if (await connects(port, 300)) {
      t.skip('this kernel answers connects to a full accept queue, so a connect cannot be made to hang');
      return;
    }

    const configInfo = await h.writeConfig(env.material, port, { redis: { connect_timeout_ms: 200,
      command_timeout_ms: 300, reconnect_min_ms: 50, reconnect_max_ms: 200 } }, 'blackhole.json');
    gate = await h.startJobgate(configInfo, { ready: false });
    const probe = { ...env, gate };
    await h.sleep(1200); // several connect deadlines
    assert.ok(gate.alive(), `jobgate died (signal ${gate.process.signalCode}, code ${gate.process.exitCode}); ` +
      `log:\n${gate.stderr}`);
    assert.equal(await gate.readyz(), 503);
    assertUnavailable(await h.enqueue(probe, 'mailers', { token, body: job('blackhole') }));
    assert.ok(gate.logs.some((l) => /no answer within connect_timeout_ms/.test(l.message || '')),
      `the connect deadline never fired; log:\n${gate.stderr}`);

    // Now a real Redis takes the port over.
    blackhole.kill('SIGKILL');
    await h.waitExit(blackhole, 2000);
    for (const s of fillers) s.destroy();
    redis = await h.startRedis(port);
    await waitFor('/readyz 200', async () => (await gate.readyz()) === 200, 5000);
    assert.ok(gate.alive());
  } finally {
    blackhole.kill('SIGKILL');
    for (const s of fillers) s.destroy();
    if (gate) await gate.stop().catch(() => {});
    if (redis) await redis.cleanup();
  }
});
