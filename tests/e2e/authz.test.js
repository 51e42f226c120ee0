'use strict';
/*
 * Authorization and routing: tiers, queue grants, tenants (403 insufficient-scope),
 * unknown queues (404 after authentication, 401 before), other paths (404) and
 * methods (405 with Allow).
 *
 * The config (from config/example.json): invoices is critical and tenant acme only;
 * mailers is standard; reports is bulk; standard includes bulk.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let env;
const JOBS = {
  invoices: { class: 'SendInvoice', args: [{ invoice_id: 7 }] },
  mailers: { class: 'SendWelcomeEmail', args: [{ user_id: 42 }] },
  reports: { class: 'BuildReport', args: ['monthly'] },
};

before(async () => {
  env = await h.setupEnvironment();
  const res = await h.enqueue(env, 'mailers', { token: env.token(), body: JOBS.mailers });
  assert.equal(res.status, 202, res.text);
});

after(async () => {
  if (env) await env.teardown();
});

function tokenWith(claimOverrides) {
  return env.token('HS256', claimOverrides);
}

async function assertAccepted(queue, claimOverrides) {
  const before = await h.queueContents(env.client, queue);
  const res = await h.enqueue(env, queue, { token: tokenWith(claimOverrides), body: JOBS[queue] });
  assert.equal(res.status, 202, `${queue} with ${JSON.stringify(claimOverrides)}: ${res.text}`);
  assert.equal(res.body.queue, queue);
  const after = await h.queueContents(env.client, queue);
  assert.equal(after.length, before.length + 1);
  const stored = await h.openPayload(env.material, after.at(-1), queue);
  assert.deepEqual({ class: stored.class, args: stored.args }, JOBS[queue]);
  assert.ok(await env.client.sismember('resque:queues', queue));
}

async function assertForbidden(queue, claimOverrides) {
  const res = await h.assertRejected(env, 403, 'insufficient-scope',
    () => h.enqueue(env, queue, { token: tokenWith(claimOverrides), body: JOBS[queue] }));
  const challenge = String(res.headers['www-authenticate'] || '');
  assert.match(challenge, /^Bearer\b/);
  assert.ok(challenge.includes('error="insufficient_scope"'), `WWW-Authenticate: ${challenge}`);
  return res;
}

test('no scope at all: 403 on every queue', async () => {
  for (const queue of Object.keys(JOBS)) await assertForbidden(queue, { scope: undefined });
  await assertForbidden('mailers', { scope: '' });
  await assertForbidden('mailers', { scope: undefined, scp: [] });
});

test('the wrong tier: tier:bulk to a standard queue, tier:critical to a standard queue: 403', async () => {
  await assertForbidden('mailers', { scope: 'tier:bulk' });
  await assertForbidden('mailers', { scope: 'tier:critical' });
  await assertForbidden('invoices', { scope: 'tier:standard' });
});

test('tiers imply only what the config says: standard includes bulk, not the reverse', async () => {
  await assertAccepted('reports', { scope: 'tier:standard' });
  await assertAccepted('mailers', { scope: 'tier:standard' });
  await assertForbidden('mailers', { scope: 'tier:bulk' });
  await assertAccepted('reports', { scope: 'tier:bulk' });
  // critical includes nothing
  await assertForbidden('reports', { scope: 'tier:critical' });
  await assertAccepted('invoices', { scope: 'tier:critical' });
});

test('a queue grant (queue:invoices) works for that queue only', async () => {
  await assertAccepted('invoices', { scope: 'queue:invoices' });
  await assertForbidden('mailers', { scope: 'queue:invoices' });
  await assertForbidden('reports', { scope: 'queue:invoices' });
  await assertAccepted('reports', { scope: 'queue:reports' });
});

test('near-miss scopes grant nothing', async () => {
  for (const scope of ['tier:standar', 'tier:standardx', 'tier:STANDARD', 'standard', 'mailers',
    'queue:mailer', 'queue:mailersx', 'queue:', 'tier:', 'tier:*', 'queue:*', 'tier:standard:mailers',
    'tier:bulk,tier:standard', 'queue:mailers/']) {
    await assertForbidden('mailers', { scope });
  }
});

test('several scopes in one space-separated string: any one of them grants', async () => {
  await assertAccepted('mailers', { scope: 'tier:bulk queue:invoices tier:standard' });
  await assertAccepted('invoices', { scope: 'tier:bulk  queue:invoices' });
});

test('scopes as an scp array work like the scope string', async () => {
  await assertAccepted('mailers', { scope: undefined, scp: ['tier:standard'] });
  await assertAccepted('invoices', { scope: undefined, scp: ['tier:bulk', 'queue:invoices'] });
  await assertForbidden('mailers', { scope: undefined, scp: ['tier:bulk'] });
  // An scp element is one scope; one with a space inside must not grant queue:mailers.
  const before = await env.snapshot();
  const res = await h.enqueue(env, 'mailers', { token: tokenWith({ scope: undefined, scp: ['tier:bulk queue:mailers'] }),
    body: JOBS.mailers });
  assert.ok(res.status === 401 || res.status === 403, `expected a refusal, got ${res.status}: ${res.text}`);
  assert.deepEqual(await env.snapshot(), before);
});

test('a tenant the queue does not serve: 403 (invoices is acme only)', async () => {
  await assertForbidden('invoices', { tenant: 'globex', scope: 'tier:critical' });
  await assertForbidden('invoices', { tenant: 'globex', scope: 'queue:invoices' });
  await assertForbidden('invoices', { tenant: 'ACME', scope: 'tier:critical' });
  await assertAccepted('invoices', { tenant: 'acme', scope: 'tier:critical' });
  await assertAccepted('mailers', { tenant: 'globex', scope: 'tier:standard' });
});

test('an unknown queue: 404 unknown-queue once authenticated, whatever the scopes', async () => {
  for (const scope of ['tier:standard', 'tier:critical tier:standard tier:bulk', 'queue:nosuch', undefined]) {
    await h.assertRejected(env, 404, 'unknown-queue',
      () => h.enqueue(env, 'nosuch', { token: tokenWith({ scope }), body: JOBS.mailers }));
  }
});

test('an unknown queue without a valid token: 401, not 404 (queue names do not leak)', async () => {
  await h.assertRejected(env, 401, 'missing-token',
    () => h.enqueue(env, 'nosuch', { headers: h.jobHeaders(undefined), body: JOBS.mailers }));
  const res = await h.assertRejected(env, 401, 'invalid-token',
    () => h.enqueue(env, 'nosuch', { headers: h.jobHeaders('garbage'), body: JOBS.mailers }));
  assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
  // The same answer as for a queue that exists.
  const known = await h.enqueue(env, 'mailers', { headers: h.jobHeaders(undefined), body: JOBS.mailers });
  const unknown = await h.enqueue(env, 'nosuch', { headers: h.jobHeaders(undefined), body: JOBS.mailers });
  assert.equal(known.text, unknown.text);
});

test('other paths: 404 not-found', async () => {
  const token = tokenWith({});
  for (const [method, target] of [['GET', '/'], ['GET', '/v1'], ['GET', '/v1/queues'],
    ['POST', '/v1/queues/mailers'], ['POST', '/v1/queues/mailers/job'], ['POST', '/v1/queues/mailers/jobs/x'],
    ['POST', '/v1/queues//jobs'], ['POST', '/v2/queues/mailers/jobs'], ['GET', '/metricsx'],
    ['GET', '/healthz/x']]) {
    for (const protocol of ['h2c', 'http1']) {
      await h.assertRejected(env, 404, 'not-found', () => h.send(env, protocol, { method, path: target,
        headers: h.jobHeaders(token), body: method === 'POST' ? JOBS.mailers : undefined }));
    }
  }
});

test('GET (and other methods) on the jobs path: 405 with Allow: POST, before authentication', async () => {
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    for (const protocol of ['h2c', 'http1']) {
      const res = await h.assertRejected(env, 405, 'method-not-allowed', () => h.send(env, protocol,
        { method, path: '/v1/queues/mailers/jobs', headers: method === 'GET' ? {} : h.jobHeaders(undefined),
          body: method === 'GET' ? undefined : JOBS.mailers }));
      assert.equal(res.headers.allow, 'POST');
    }
  }
});

test('POST to /healthz or /readyz: 405 with Allow: GET, HEAD', async () => {
  for (const target of ['/healthz', '/readyz']) {
    const res = await h.assertRejected(env, 405, 'method-not-allowed',
      () => h.send(env, 'h2c', { method: 'POST', path: target, headers: h.jobHeaders(undefined), body: {} }));
    assert.match(String(res.headers.allow), /^GET, ?HEAD$/);
  }
});
