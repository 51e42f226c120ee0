'use strict';
/*
 * The C worker kit, `jobgate verify`, and `jobgate keygen`: every shared vector
 * (tests/vectors/envelope-v1.json) judged as the other kits judge it, key files as
 * ENVELOPE.md describes them, and a job enqueued over HTTP/2 read back from Redis
 * and opened the way the README shows.
 */
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./lib/harness');

const VECTORS = JSON.parse(fs.readFileSync(path.join(h.REPO, 'tests', 'vectors', 'envelope-v1.json'), 'utf8'));

let dir;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobgate-verify-'));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A directory holding the vectors' worker keys, as a worker would keep them. */
function vectorKeys() {
  const keys = path.join(dir, 'vector-keys');
  if (!fs.existsSync(keys)) {
    fs.mkdirSync(keys);
    for (const [kid, key] of Object.entries(VECTORS.signing_keys)) fs.writeFileSync(path.join(keys, `${kid}.sign.pub`), `${key}\n`);
    for (const [kid, key] of Object.entries(VECTORS.sealing_keys)) fs.writeFileSync(path.join(keys, `${kid}.seal.key`), `${key}\n`, { mode: 0o600 });
  }
  return keys;
}

function verify(args, input) {
  return spawnSync(h.jobgateBinary(), ['verify', ...args], { input, encoding: 'utf8' });
}

for (const vector of VECTORS.cases) {
  test(`jobgate verify: ${vector.name}`, () => {
    const run = verify(['--keys', vectorKeys(), '--queue', vector.queue, '--class', vector.class,
      '--now', String(VECTORS.now)], `${vector.payload}\n`);
    if (vector.ok) {
      assert.equal(run.status, 0, run.stdout + run.stderr);
      const match = /^1: valid (.*)\n$/.exec(run.stdout);
      assert.ok(match, run.stdout);
      const job = JSON.parse(match[1]);
      assert.deepEqual(job.args, vector.args);
      assert.equal(job.id, vector.id);
      assert.equal(job.tenant, vector.tenant);
      assert.equal(job.sub, vector.sub);
      assert.equal(job.queue, vector.queue);
      assert.equal(job.class, vector.class);
    } else {
      assert.equal(run.status, 1, run.stdout + run.stderr);
      assert.match(run.stdout, new RegExp(`^1: refused: ${vector.reason}: [^\\n]+\\n$`));
    }
  });
}

test('jobgate verify judges several payloads, one per line, and exits 1 if any is refused', () => {
  const valid = VECTORS.cases.find((v) => v.ok && v.queue === 'invoices');
  const forged = VECTORS.cases.find((v) => v.reason === 'unsigned');
  const run = verify(['--keys', vectorKeys(), '--now', String(VECTORS.now)],
    `${valid.payload}\n\n${forged.payload}\nnot json\n`);
  assert.equal(run.status, 1);
  const lines = run.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^1: valid /);
  assert.match(lines[1], /^3: refused: unsigned: /);
  assert.match(lines[2], /^4: refused: malformed: /);
});

test('jobgate verify refuses a job past its expiry now, and runs it with --now before', () => {
  const valid = VECTORS.cases.find((v) => v.ok);
  assert.equal(verify(['--keys', vectorKeys(), '--now', '4000000000'], valid.payload).status, 1);
  assert.equal(verify(['--keys', vectorKeys(), '--now', String(VECTORS.now)], valid.payload).status, 0);
});

test('jobgate verify without keys, or with a bad key file, is a usage error (exit 2)', () => {
  let run = verify([], '');
  assert.equal(run.status, 2);
  assert.match(run.stderr, /--keys DIR/);
  const empty = fs.mkdtempSync(path.join(dir, 'empty-'));
  run = verify(['--keys', empty], '');
  assert.equal(run.status, 2);
  assert.match(run.stderr, /no \*\.sign\.pub file/);
  fs.writeFileSync(path.join(empty, 'broken.sign.pub'), 'not a key\n');
  run = verify(['--keys', empty], '');
  assert.equal(run.status, 2);
  assert.match(run.stderr, /broken\.sign\.pub: not a 32-byte key/);
});

test('jobgate keygen writes a key pair ENVELOPE.md describes, secret 0600, and never overwrites', () => {
  const out = fs.mkdtempSync(path.join(dir, 'keygen-'));
  for (const kind of ['sign', 'seal']) {
    const stdout = execFileSync(h.jobgateBinary(), ['keygen', '--kind', kind, '--kid', 'team-1', '--dir', out],
      { encoding: 'utf8' });
    assert.deepEqual(stdout.trim().split('\n'),
      [path.join(out, `team-1.${kind}.key`), path.join(out, `team-1.${kind}.pub`)]);
    for (const suffix of ['key', 'pub']) {
      const text = fs.readFileSync(path.join(out, `team-1.${kind}.${suffix}`), 'utf8');
      assert.match(text, /^[A-Za-z0-9_-]{43}\n$/);
    }
    assert.equal(fs.statSync(path.join(out, `team-1.${kind}.key`)).mode & 0o777, 0o600);
    const again = spawnSync(h.jobgateBinary(), ['keygen', '--kind', kind, '--kid', 'team-1', '--dir', out],
      { encoding: 'utf8' });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /File exists/);
  }
  for (const args of [['--kind', 'sign'], ['--kind', 'box', '--kid', 'x'], ['--kind', 'sign', '--kid', 'a.b']]) {
    assert.equal(spawnSync(h.jobgateBinary(), ['keygen', ...args, '--dir', out]).status, 2, args.join(' '));
  }
});

test('a job enqueued over HTTP/2 reads back from Redis and opens with jobgate verify', async () => {
  const env = await h.setupEnvironment({ overrides: {
    classes: { SendPasswordReset: { schema: path.join(h.REPO, 'schemas', 'SendPasswordReset.json') } },
  } });
  try {
    const args = [{ user_id: 7, email: 'grace@example.test', reset_token: 'x'.repeat(40),
      expires_at: '2026-12-04T00:00:00Z' }];
    const res = await h.enqueue(env, 'mailers', { token: env.token(),
      body: { class: 'SendPasswordReset', args } });
    assert.equal(res.status, 202, res.text);
    const [payload] = await h.queueContents(env.client, 'mailers');
    const run = verify(['--keys', env.material.envelopeDir, '--queue', 'mailers'], `${payload}\n`);
    assert.equal(run.status, 0, run.stdout);
    const job = JSON.parse(/^1: valid (.*)$/m.exec(run.stdout)[1]);
    assert.deepEqual(job.args, args);
    assert.equal(job.id, res.body.id);
    assert.equal(job.kid, 'dev-sign');
  } finally {
    await env.teardown();
  }
});
