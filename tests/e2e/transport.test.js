'use strict';
/*
 * Transport budgets: HTTP/2 rapid reset (limits.connection_resets: the connection
 * shut down, a bounded number of jobs written, requests after the budget refused 429
 * too-many-resets, other connections unaffected), slow clients (HTTP/1.1 request
 * timeout, HTTP/2 idle timeout, TLS handshake timeout), request header size (431
 * headers-too-large) and the budget of failed tokens per client address (429
 * too-many-failed-tokens).
 *
 * The rapid-reset client is lib/rapid_reset.py, on Debian's python3-h2.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const tls = require('node:tls');
const h = require('./lib/harness');
const b = require('./lib/budgets');

const RESETS = { per_second: 10, burst: 100 };
const FAILED_TOKENS = { per_second: 0.5, burst: 5 };
const MAX_HEADER_BYTES = 2048;
const TIMEOUT_MS = 1000;
const JOB_TEMPLATE = '{"class":"SendWelcomeEmail","args":[{"user_id":{n}}]}';

let env;

before(async () => {
  env = await h.setupEnvironment({ overrides: { limits: {
    request_timeout_ms: TIMEOUT_MS, idle_timeout_ms: TIMEOUT_MS, handshake_timeout_ms: TIMEOUT_MS,
    max_header_bytes: MAX_HEADER_BYTES, connection_resets: RESETS, address_failed_tokens: FAILED_TOKENS,
  },
  // No tenant rate: its Redis key, which expires on its own, would upset the before and
  // after snapshots of Redis, and only the transport budgets are tested here.
  tenants: { '*': { jobs_per_second: 0 } } } });
});

after(async () => {
  if (env) await env.teardown();
});

const job = (n) => ({ class: 'SendWelcomeEmail', args: [{ user_id: n }] });

/* ---------- HTTP/2 rapid reset ---------- */

test('rapid reset: the connection shut down past its budget, few jobs written, others served',
  async (t) => {
    const token = env.token();
    await env.client.del('resque:queue:mailers', 'resque:queue:reports');

    // A well-behaved producer on its own connection, one job after another, while the
    // flood runs; on reports, so that its jobs are told apart from the flood's, and as
    // another tenant, so that only the connection budget is in play.
    const wellBehaved = (async () => {
      const session = await h.h2Connect(env.gate.base);
      const other = env.token('HS256', { tenant: 'globex' });
      const statuses = [];
      try {
        for (let n = 1; n <= 50; n++) {
          const res = await h.enqueue(env, 'reports', { token: other, session,
            body: { class: 'BuildReport', args: [{ n }] } });
          statuses.push(res.status === 202 ? 202 : `${res.status} ${res.text || `reset ${res.reset}`}`);
        }
      } finally {
        session.close();
      }
      return statuses;
    })();
    const flood = b.rapidReset(env.gate, { path: '/v1/queues/mailers/jobs', token, count: 5000,
      template: JOB_TEMPLATE, lingerMs: 8000, timeoutMs: 15000 });
    const [statuses, report] = await Promise.all([wellBehaved, flood]);
    await h.sleep(300); // any Redis write already sent lands

    const written = await h.openQueue(env, 'mailers');
    t.diagnostic(`rapid reset: ${JSON.stringify(report)}; jobs written: ${written.length}`);

    // Past its budget the connection is shut down (h2o 2.2.5 gives no way to send
    // GOAWAY from outside; a GOAWAY, if one came, must not be the idle timeout's).
    assert.ok(report.closed, `the connection was not closed: ${JSON.stringify(report)}`);
    if (report.goaway) assert.notEqual(report.goaway.error_code, 0, JSON.stringify(report));
    // The budget is 100 resets plus 10 a second, and the flood is written in well under
    // a second: the server closed the connection before it took half of the 5,000 streams.
    assert.ok(report.written_streams < 2500,
      `all ${report.written_streams} streams written before the close: ${JSON.stringify(report)}`);
    // A job is written only if its stream was not reset before its Redis write was sent,
    // and the budget stops the connection early: at most a few of the flood's jobs.
    assert.ok(written.length <= 200, `${written.length} jobs of the flood written`);

    // The other connection was served throughout.
    assert.deepEqual(statuses, Array(50).fill(202));
    assert.equal((await h.queueContents(env.client, 'reports')).length, 50);
    // And new connections still are.
    const res = await h.enqueue(env, 'mailers', { token, body: job(999999) });
    assert.equal(res.status, 202, res.text);
  });

test('a connection that resets streams under its budget is not closed', async () => {
  const token = env.token();
  await env.client.del('resque:queue:mailers');
  const report = await b.rapidReset(env.gate, { path: '/v1/queues/mailers/jobs', token, count: 50,
    template: JOB_TEMPLATE, thenRequest: true, lingerMs: 400, timeoutMs: 8000 });
  assert.equal(report.written_streams, 50);
  assert.equal(report.goaway, null, `GOAWAY after 50 resets: ${JSON.stringify(report)}`);
  assert.equal(report.closed, false, `closed after 50 resets: ${JSON.stringify(report)}`);
  assert.equal(report.final.status, 202, `the request after the resets: ${JSON.stringify(report.final)}`);
  const { id } = JSON.parse(report.final.body);
  const stored = await h.openQueue(env, 'mailers');
  assert.ok(stored.some((s) => s.envelope.id === id), 'the job answered 202 is in Redis');
});

test('requests read after the reset budget is spent are answered 429 too-many-resets, with no work',
  async () => {
    // A budget of two resets, spent by the first two streams: every request read after
    // them, in the same write, is refused without any work, and the connection is shut
    // down.
    const tight = await h.setupEnvironment({ overrides: {
      limits: { connection_resets: { per_second: 0.1, burst: 2 } },
      tenants: { '*': { jobs_per_second: 0 } } } });
    try {
      const before = await tight.snapshot();
      const streams = await b.h2Burst(tight.gate, { path: '/v1/queues/mailers/jobs',
        token: tight.token(), count: 12, resetFirst: 3, template: JOB_TEMPLATE });
      await h.sleep(300); // anything wrongly sent to Redis lands
      assert.deepEqual(await tight.snapshot(), before, 'Redis changed');
      // The answers cannot reach the client: its connection is shut down.
      for (const stream of streams) assert.notEqual(stream.status, 202, JSON.stringify(stream));

      const refused = tight.gate.logs.filter((line) => line.event === 'request' && line.status === 429 &&
        line.problem === 'urn:jobgate:problem:too-many-resets');
      assert.ok(refused.length >= 1, `no request refused too-many-resets; log:\n${tight.gate.stderr}`);
      assert.ok(refused.length <= 10, `${refused.length} refused: more than came after the budget`);
      assert.match(tight.gate.stderr, /shut down an HTTP\/2 connection that reset too many streams/);
      // Other connections are served.
      const res = await h.enqueue(tight, 'mailers', { token: tight.token(), body: job(1) });
      assert.equal(res.status, 202, res.text);
    } finally {
      await tight.teardown();
    }
  });

/* ---------- Slow clients ---------- */

/** Checks that a watched socket was closed by the server after about TIMEOUT_MS. */
function assertClosedByTimeout(watch, what) {
  assert.ok(watch.closed, `${what}: still open after ${Math.round(watch.afterMs)} ms`);
  assert.ok(watch.afterMs >= TIMEOUT_MS / 2,
    `${what}: closed after ${Math.round(watch.afterMs)} ms, before the ${TIMEOUT_MS} ms timeout`);
}

test('HTTP/1.1: a request head that stops halfway is closed after request_timeout_ms', async () => {
  const socket = await b.connectRaw({ port: env.gate.httpPort });
  socket.write('POST /v1/queues/mailers/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl');
  const watch = await b.watchClose(socket, 5000);
  assertClosedByTimeout(watch, 'HTTP/1.1 half head');
  // If anything came back, it is an HTTP error answer, never a 2xx.
  if (watch.data.length > 0) assert.match(watch.data.toString('latin1'), /^HTTP\/1\.1 [45]\d\d /);
});

test('HTTP/2: a connection that sends its preface and SETTINGS, then nothing, is closed after idle_timeout_ms',
  async () => {
    const socket = await b.connectRaw({ port: env.gate.httpPort });
    socket.write(Buffer.concat([b.H2_PREFACE, b.frame(b.FRAME.SETTINGS, 0, 0)]));
    let pending = Buffer.alloc(0);
    const received = [];
    const watch = await b.watchClose(socket, 5000, (chunk, s) => {
      const { frames, rest } = b.readFrames(Buffer.concat([pending, chunk]));
      pending = rest;
      for (const f of frames) {
        received.push(f);
        // A well-behaved client acknowledges the server's SETTINGS.
        if (f.type === b.FRAME.SETTINGS && !(f.flags & 1)) s.write(b.frame(b.FRAME.SETTINGS, 1, 0));
      }
    });
    assert.ok(received.some((f) => f.type === b.FRAME.SETTINGS), 'the server spoke HTTP/2 (its SETTINGS)');
    assertClosedByTimeout(watch, 'idle h2c connection');
    const goaway = received.find((f) => f.type === b.FRAME.GOAWAY);
    if (goaway) assert.notEqual(goaway.payload.readUInt32BE(4), 11, 'an idle connection is no abuse');
  });

test('TLS: a connection that never sends a ClientHello is closed after handshake_timeout_ms', async () => {
  const socket = await b.connectRaw({ port: env.gate.tlsPort });
  const watch = await b.watchClose(socket, 5000);
  assertClosedByTimeout(watch, 'TLS without ClientHello');
  assert.equal(watch.data.length, 0, 'nothing is sent before a ClientHello');
  // The listener itself is fine: a real handshake completes.
  const secure = await new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: env.gate.tlsPort, ca: env.material.cert,
      ALPNProtocols: ['h2'] }, () => resolve(s));
    s.once('error', reject);
  });
  assert.equal(secure.alpnProtocol, 'h2');
  secure.destroy();
});

/* ---------- Request header size ---------- */

test('headers over max_header_bytes: 431 headers-too-large over HTTP/2 and HTTP/1.1, nothing written', async () => {
  const token = env.token();
  const oneBig = h.jobHeaders(token, { 'x-padding': 'p'.repeat(MAX_HEADER_BYTES) });
  const many = h.jobHeaders(token, Object.fromEntries(Array.from({ length: 40 },
    (_, i) => [`x-pad-${String(i).padStart(2, '0')}`, 'q'.repeat(50)])));
  // Every header under h2o's own limits; only the sum is too much.
  for (const headers of [oneBig, many]) assert.ok(b.headerBytes(headers) > MAX_HEADER_BYTES + 200);
  for (const headers of [oneBig, many]) {
    for (const protocol of ['h2c', 'http1', 'h2', 'https1']) {
      await h.assertRejected(env, 431, 'headers-too-large',
        () => h.enqueue(env, 'mailers', { protocol, headers, body: job(431) }));
    }
  }
});

test('headers under max_header_bytes are accepted', async () => {
  const token = env.token();
  const headers = h.jobHeaders(token, { 'x-padding': 'p'.repeat(900) });
  // Room for what the client adds (host, content-length, connection): < 100 bytes.
  assert.ok(b.headerBytes(headers) < MAX_HEADER_BYTES - 400, `${b.headerBytes(headers)} bytes`);
  for (const protocol of ['h2c', 'http1']) {
    const res = await h.enqueue(env, 'mailers', { protocol, headers, body: job(432) });
    assert.equal(res.status, 202, `${protocol}: ${res.text}`);
  }
});

/* ---------- Failed tokens per address ---------- */

/** A token that fails verification: the right kid, a signature by another secret. */
function badToken(n) {
  return h.mint(h.claims({ sub: `svc-bad-${n}` }),
    { kid: env.material.keys.HS256.kid, alg: 'HS256', key: crypto.randomBytes(64) });
}

/** A good token never sent before (distinct claims, so not in the verified-token cache). */
const freshToken = (label) => env.token('HS256', { sub: `svc-${label}-${crypto.randomUUID()}` });

function post(session, token, n) {
  return h.enqueue(env, 'mailers', { session, token, body: job(n) });
}

test('failed tokens per address: over budget, 429 too-many-failed-tokens for uncached tokens from that address only',
  async () => {
    const cached = freshToken('cached');
    let from2 = await b.h2ConnectFrom(env.gate.base, '127.0.0.2');
    try {
      // Verified from 127.0.0.2 before the flood: in the cache from now on.
      let res = await post(from2, cached, 1);
      assert.equal(res.status, 202, res.text);

      // The burst: 5 failed tokens are answered 401, at once (the budget refills 1 in 2 s).
      const before = await env.snapshot();
      const failures = await Promise.all(Array.from({ length: FAILED_TOKENS.burst },
        (_, i) => post(from2, badToken(i), 100 + i)));
      for (const failure of failures) h.assertProblem(failure, 401, 'invalid-token');
      assert.deepEqual(await env.snapshot(), before);

      // Over budget: the 6th bad token, and a good one never verified, get 429.
      res = await h.assertRejected(env, 429, 'too-many-failed-tokens', () => post(from2, badToken(6), 106));
      const retryAfter = Number(res.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3,
        `Retry-After: ${res.headers['retry-after']}`);
      await h.assertRejected(env, 429, 'too-many-failed-tokens', () => post(from2, freshToken('new'), 107));

      // The token verified before the flood still works from 127.0.0.2,
      res = await post(from2, cached, 2);
      assert.equal(res.status, 202, `a cached token from the address over budget: ${res.text}`);
      // and other addresses are not affected.
      res = await h.enqueue(env, 'mailers', { token: freshToken('other-address'), body: job(3) });
      assert.equal(res.status, 202, `a fresh token from 127.0.0.1: ${res.text}`);

      // Once Retry-After has passed, 127.0.0.2 may try a new token again.
      from2.close();
      await h.sleep(retryAfter * 1000 + 300);
      from2 = await b.h2ConnectFrom(env.gate.base, '127.0.0.2');
      res = await post(from2, freshToken('later'), 4);
      assert.equal(res.status, 202, `a fresh token from 127.0.0.2 after Retry-After: ${res.text}`);
    } finally {
      from2.close();
    }
  });
