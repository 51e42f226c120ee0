'use strict';
/*
 * Schema validation end to end, with the real schemas in schemas/: a valid job is
 * written exactly, an invalid one gets 422 invalid-arguments listing every failing
 * JSON Pointer (bounded), quoting no value from the job, and leaves Redis unchanged.
 * Also `jobgate validate`, the same check for producers' own CI.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const h = require('./lib/harness');

const SCHEMAS = path.join(h.REPO, 'schemas');
const CLASSES = ['SendInvoice', 'SendWelcomeEmail', 'SendPasswordReset', 'BuildReport'];
const SECRET = 'tok_Zq8secretValue1234';

let env;
let token;

before(async () => {
  env = await h.setupEnvironment({ overrides: { classes: Object.fromEntries(
    CLASSES.map((name) => [name, { schema: path.join(SCHEMAS, `${name}.json`) }])) } });
  token = env.token('HS256', { scope: 'tier:critical tier:standard' });
});

after(async () => {
  if (env) await env.teardown();
});

const invoice = (overrides = {}) => ({
  invoice_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
  customer_email: 'billing@example.com',
  amount_cents: 1999,
  currency: 'EUR',
  due_date: '2026-12-31',
  lines: [{ description: 'Gateway, monthly', quantity: 1, unit_cents: 1999 }],
  card_token: SECRET,
  ...overrides,
});

/** Sends a job that must be refused with 422 invalid-arguments; returns the problem. */
async function assertInvalid(queue, body) {
  const res = await h.assertRejected(env, 422, 'invalid-arguments',
    () => h.enqueue(env, queue, { token, body }));
  assert.ok(Array.isArray(res.body.errors), res.text);
  assert.equal(typeof res.body.error_count, 'number');
  return res.body;
}

const failures = (problem) => problem.errors.map((e) => `${e.pointer} ${e.keyword}`).sort();

test('a job that passes its schema is written exactly', async () => {
  const body = { class: 'SendInvoice', args: [invoice()] };
  const res = await h.enqueue(env, 'invoices', { token, body });
  assert.equal(res.status, 202, res.text);
  // Stored in canonical form, members sorted: the same values, in another order.
  assert.deepEqual((await h.storedJobs(env, 'invoices')).map((job) => JSON.parse(job)), [body]);
});

test('every failing pointer is listed, each with its keyword', async () => {
  const problem = await assertInvalid('invoices', { class: 'SendInvoice', args: [invoice({
    invoice_id: 'not-a-uuid', customer_email: 'nobody', amount_cents: 0, currency: 'DOGE',
    due_date: '2026-02-30', card_token: 'tok_!', surprise: true,
    lines: [{ description: '', quantity: 1.5, unit_cents: 1 }],
  }), 'extra'] });
  assert.deepEqual(failures(problem), [
    '/args/0/amount_cents minimum',
    '/args/0/card_token pattern',
    '/args/0/currency enum',
    '/args/0/customer_email format',
    '/args/0/due_date format',
    '/args/0/invoice_id format',
    '/args/0/lines/0/description minLength',
    '/args/0/lines/0/quantity type',
    '/args/0/surprise additionalProperties',
    '/args/1 items',
  ]);
  assert.equal(problem.error_count, problem.errors.length);
});

test('a missing required member and a missing argument are reported', async () => {
  const { card_token: _, customer_email: __, ...partial } = invoice();
  let problem = await assertInvalid('invoices', { class: 'SendInvoice', args: [partial] });
  assert.deepEqual(failures(problem), ['/args/0/customer_email required']);
  problem = await assertInvalid('invoices', { class: 'SendInvoice', args: [] });
  assert.deepEqual(failures(problem), ['/args minItems']);
});

test('no error repeats a value from the job, secret or not', async () => {
  const problem = await assertInvalid('mailers', { class: 'SendPasswordReset', args: [{
    user_id: -1, email: 'leak-me-please', reset_token: `${SECRET}-but-too-long-`.repeat(8),
    expires_at: 'yesterday' }] });
  const text = JSON.stringify(problem);
  for (const value of ['leak-me-please', SECRET, 'yesterday']) {
    assert.ok(!text.includes(value), `the problem quotes ${value}: ${text}`);
  }
  assert.ok(!env.gate.stderr.includes(SECRET) && !env.gate.stderr.includes('leak-me-please'),
    'a job value reached the log');
});

test('the list of failures is bounded, and the count says how many there were', async () => {
  const lines = Array.from({ length: 40 }, () => ({ description: '', quantity: 0, unit_cents: -1 }));
  const problem = await assertInvalid('invoices', { class: 'SendInvoice', args: [invoice({ lines })] });
  assert.equal(problem.errors.length, 16);
  assert.equal(problem.error_count, 120);
});

test('integers beyond 2^53 and deep nesting are refused whatever the schema says', async () => {
  let problem = await assertInvalid('mailers',
    { class: 'SendWelcomeEmail', args: [{ user_id: 2 ** 53 + 2 }] });
  assert.deepEqual(failures(problem), ['/args/0/user_id maxInteger']);
  // Written as reals they are no different: 9007199254740993.0 would reach a worker as ...992.
  for (const raw of ['9007199254740993.0', '1e300', '12345678901234567890.5']) {
    problem = await assertInvalid('mailers',
      `{"class":"SendWelcomeEmail","args":[{"user_id":${raw}}]}`);
    assert.deepEqual(failures(problem), ['/args/0/user_id maxInteger'], raw);
  }

  let nested = 1;
  for (let i = 0; i < 40; i++) nested = [nested];
  problem = await assertInvalid('mailers', { class: 'SendWelcomeEmail', args: [{ user_id: 1 }, nested] });
  assert.ok(problem.errors.some((e) => e.keyword === 'maxDepth'), JSON.stringify(problem));
});

test('formats are assertions: date-time, email, uuid, date', async () => {
  const reset = (overrides) => ({ class: 'SendPasswordReset', args: [{ user_id: 7,
    email: 'user@example.com', reset_token: 'r'.repeat(40), expires_at: '2026-12-03T18:00:00Z',
    ...overrides }] });
  const ok = await h.enqueue(env, 'mailers', { token, body: reset({}) });
  assert.equal(ok.status, 202, ok.text);
  for (const expires of ['2026-12-03 18:00:00', '2026-13-01T00:00:00Z', '2026-12-03T18:00:00']) {
    const problem = await assertInvalid('mailers', reset({ expires_at: expires }));
    assert.deepEqual(failures(problem), ['/args/0/expires_at format'], expires);
  }
});

function runValidate(schema, input) {
  return new Promise((resolve) => {
    const child = execFile(h.jobgateBinary(), ['validate', '--schema', schema],
      (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }));
    // jobgate stops reading when the schema does not load; that is not the test's error.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

test('`jobgate validate` gives one verdict per line and fails if any line fails', async () => {
  const schema = path.join(SCHEMAS, 'SendWelcomeEmail.json');
  const good = await runValidate(schema, '[{"user_id":42,"locale":"en"}]\n[{"user_id":1}]\n');
  assert.equal(good.code, 0, good.stderr);
  assert.equal(good.stdout, '1: valid\n2: valid\n');

  const bad = await runValidate(schema,
    '[{"user_id":42}]\n[{"user_id":0,"email":"secret@@x"}]\n{"a":1,"a":2}\n');
  assert.equal(bad.code, 1);
  const lines = bad.stdout.trim().split('\n');
  assert.equal(lines[0], '1: valid');
  assert.match(lines[1], /^2: invalid: \/0\/user_id minimum: .*; \/0\/email format: /);
  assert.ok(!lines[1].includes('secret@@x'));
  assert.match(lines[2], /^3: not JSON/);
});

test('`jobgate validate` refuses a schema that does not load, naming file and pointer', async () => {
  const broken = path.join(env.material.dir, 'broken.json');
  require('node:fs').writeFileSync(broken, '{"type": "array", "items": {"maxLenght": 3}}');
  const res = await runValidate(broken, '[]\n');
  assert.equal(res.code, 2);
  assert.match(res.stderr, /broken\.json: \/items.*maxLenght/);
});
