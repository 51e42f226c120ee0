'use strict';
/*
 * The JavaScript worker kit (workers/node-resque) against workers/ENVELOPE.md: its
 * canonical JSON against the RFC 8785 reference data, envelopes built here as jobgate
 * builds them (signed, with sealed values) and then tampered with, the shared vectors
 * that jobgate's own code made (tests/vectors/envelope-v1.json), and a real node-resque
 * Worker that runs a verified job and fails an unsigned one.
 */
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Worker } = require('node-resque');
const h = require('./lib/harness');
const KIT = path.join(__dirname, '../../workers/node-resque');
const { Verifier, JobRefused, loadKeys, canonicalize } = require(path.join(KIT, 'jobgate.js'));
const sodium = require(require.resolve('libsodium-wrappers', { paths: [KIT] }));

const SHARED = process.env.JOBGATE_SHARED || path.join(__dirname, '../../../shared');
const JCS_VECTORS = path.join(SHARED, 'jcs-vectors');

const NOW = 1764806400;
const SECRET = 'tok_4242_secret';
const SIGNING_KID = 'sign-test';
const SEALING_KID = 'workers-test';

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

let keys;

/** Key pairs for one signer and one workers' key, made once libsodium is ready. */
async function testKeys() {
  if (!keys) {
    await sodium.ready;
    keys = { signing: sodium.crypto_sign_keypair(), sealing: sodium.crypto_box_keypair() };
  }
  return keys;
}

/** A Verifier holding the test keys, at NOW unless options say otherwise. */
async function verifier(options = {}) {
  const { signing, sealing } = await testKeys();
  return Verifier.create({ signingKeys: { [SIGNING_KID]: b64url(signing.publicKey) },
    sealingKeys: { [SEALING_KID]: sealing.privateKey }, now: () => NOW, ...options });
}

/* ---------- a producer, written from ENVELOPE.md ---------- */

/** Seals secret for the field at pointer of the job { class, id, queue }. */
function seal(secret, job, pointer) {
  const recipient = keys.sealing.publicKey;
  const ephemeral = sodium.crypto_box_keypair();
  const shared = sodium.crypto_scalarmult(ephemeral.privateKey, recipient);
  const key = sodium.crypto_generichash(32,
    Buffer.concat([Buffer.from('jobgate-seal-v1'), ephemeral.publicKey, recipient]), shared);
  const nonce = sodium.randombytes_buf(24);
  // These members are already in RFC 8785 order.
  const ad = JSON.stringify({ class: job.class, field: pointer, id: job.id, queue: job.queue });
  const ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(secret, ad, null, nonce, key);
  return { kid: SEALING_KID, epk: b64url(ephemeral.publicKey), nonce: b64url(nonce),
    ct: b64url(ct) };
}

/** Follows pointer to its parent in args; returns [parent, name]. */
function pointerParent(args, pointer) {
  const tokens = pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  const name = tokens.pop();
  return [tokens.reduce((value, token) => value[token], args), name];
}

/** Returns envelope with a fresh signature by the test signer (or by signingKey). */
function sign(envelope, signingKey = keys.signing.privateKey) {
  const { sig, ...signed } = envelope;
  return { ...signed, sig: b64url(sodium.crypto_sign_detached(canonicalize(signed), signingKey)) };
}

/**
 * A signed envelope for the producer's args; the string at each pointer of sealed is
 * sealed first. members replace the defaults.
 */
const INVOICE = [{ invoice_id: 1042, amount: 19.99, card_token: SECRET }];

function envelope({ args = INVOICE, sealed = ['/0/card_token'], ...members } = {}) {
  const built = { jobgate: 1, id: '019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a63', tenant: 'acme',
    sub: 'billing-service', queue: 'invoices', class: 'SendInvoice', iat: NOW - 60, exp: NOW + 3600,
    args: structuredClone(args), sealed, kid: SIGNING_KID, ...members };
  for (const pointer of sealed) {
    const [parent, name] = pointerParent(built.args, pointer);
    parent[name] = seal(parent[name], built, pointer);
  }
  return sign(built);
}

/** A copy of an envelope changed by edit; re-signed unless resign is false. */
function tampered(original, edit, { resign = true } = {}) {
  const copy = structuredClone(original);
  edit(copy);
  return resign ? sign(copy) : copy;
}

const place = { className: 'SendInvoice', queue: 'invoices' };

/** Asserts that opening args refuses with reason, and that no secret leaks into the message. */
function assertRefused(kit, args, reason, context = place) {
  assert.throws(() => kit.open(args, context), (error) => {
    assert.ok(error instanceof JobRefused, `expected JobRefused, got ${error}`);
    assert.equal(error.reason, reason, error.message);
    assert.ok(error.message.startsWith(`jobgate: ${reason}: `), error.message);
    assert.ok(!error.message.includes(SECRET), 'the message holds the secret');
    return true;
  });
}

function deepFreeze(value) {
  if (typeof value === 'object' && value !== null) Object.values(value).forEach(deepFreeze);
  return Object.freeze(value);
}

/* ---------- RFC 8785 ---------- */

for (const name of fs.readdirSync(path.join(JCS_VECTORS, 'input')).sort()) {
  test(`canonicalize matches the RFC 8785 reference output for ${name}`, () => {
    const input = JSON.parse(fs.readFileSync(path.join(JCS_VECTORS, 'input', name), 'utf8'));
    const expected = fs.readFileSync(path.join(JCS_VECTORS, 'output', name), 'utf8');
    assert.equal(canonicalize(input), expected);
  });
}

test('canonicalize writes numbers as ECMAScript does and refuses what JSON cannot hold', () => {
  assert.equal(canonicalize([-0, 1e21, 5e-7, 19.99, 9007199254740992]),
    '[0,1e+21,5e-7,19.99,9007199254740992]');
  assert.equal(canonicalize({ b: 1, a: { d: [], c: '/é\u001f' } }),
    '{"a":{"c":"/é\\u001f","d":[]},"b":1}');
  for (const bad of [NaN, Infinity, '\ud800', { x: undefined }, () => 1, 1n]) {
    assert.throws(() => canonicalize(bad), TypeError);
  }
});

/* ---------- envelopes built here ---------- */

test('a signed job opens to its metadata and the producer\'s args, secret opened', async () => {
  const kit = await verifier();
  const job = envelope();
  assert.deepEqual(kit.open([job], place), {
    id: job.id, tenant: 'acme', sub: 'billing-service', queue: 'invoices', class: 'SendInvoice',
    iat: NOW - 60, exp: NOW + 3600, kid: SIGNING_KID, args: INVOICE,
  });
  assert.equal(kit.open([job]).args[0].card_token, SECRET, 'className and queue are optional');
});

test('every sealed value opens, at pointers with escaped tokens, nested in arrays', async () => {
  const kit = await verifier();
  const args = [{ 'a/b': 'first secret ✓', 'm~n': ['plain', 'second secret'] }, 'last'];
  const job = envelope({ args, sealed: ['/0/a~1b', '/0/m~0n/1'] });
  assert.equal(typeof job.args[0]['a/b'].ct, 'string');
  assert.deepEqual(kit.open([job], place).args, args);
});

test('a job without secrets opens, and keys may be base64url text or bytes', async () => {
  const { signing } = await testKeys();
  const kit = await verifier({ signingKeys: new Map([[SIGNING_KID, signing.publicKey]]) });
  const args = [{ user: 7 }, 'x', null, [1.5, true]];
  assert.deepEqual(kit.open([envelope({ args, sealed: [] })], place).args, args);
  await assert.rejects(verifier({ signingKeys: { short: 'AAAA' } }), TypeError);
  await assert.rejects(verifier({ sealingKeys: { short: new Uint8Array(31) } }), TypeError);
});

test('the args node-resque froze are never changed; the opened args are new objects', async () => {
  const kit = await verifier();
  const args = deepFreeze([envelope()]);
  const before = JSON.stringify(args);
  const opened = kit.open(args, place);
  assert.equal(JSON.stringify(args), before);
  opened.args[0].extra = 1;
  assert.equal(args[0].args[0].extra, undefined);
});

test('args that are not one object with a "jobgate" member are unsigned', async () => {
  const kit = await verifier();
  const job = envelope();
  const notOneEnvelope = [[], [1], ['x'], [null], [[job]], [{}], [{ class: 'SendInvoice' }],
    [job, job], { 0: job }];
  for (const args of notOneEnvelope) assertRefused(kit, args, 'unsigned');
});

test('a version other than 1 is unsupported-version', async () => {
  const kit = await verifier();
  for (const version of [2, 0, '1', null, 1.5]) {
    const job = tampered(envelope(), (e) => { e.jobgate = version; });
    assertRefused(kit, [job], 'unsupported-version');
  }
});

test('a missing, extra or mistyped member, bad sig, pointer to nothing is malformed', async () => {
  const kit = await verifier();
  const edits = {
    'missing id': (e) => { delete e.id; },
    'missing sealed': (e) => { delete e.sealed; },
    'extra member': (e) => { e.note = 'x'; },
    'iat as a string': (e) => { e.iat = String(e.iat); },
    'exp as a real': (e) => { e.exp += 0.5; },
    'args as an object': (e) => { e.args = { 0: e.args[0] }; },
    'sealed entry not a string': (e) => { e.sealed = [0]; },
    'kid not a string': (e) => { e.kid = 1; },
    'pointer to nothing': (e) => { e.sealed = ['/0/no_such_field']; },
    'pointer past the end': (e) => { e.sealed = ['/1']; },
    'pointer with a leading zero': (e) => { e.sealed = ['/00/card_token']; },
    'pointer without a slash': (e) => { e.sealed = ['0/card_token']; },
    'pointer to args itself': (e) => { e.sealed = ['']; },
    'pointer with a bad escape': (e) => { e.sealed = ['/0/card~2token']; },
  };
  for (const [what, edit] of Object.entries(edits)) {
    const job = tampered(envelope(), edit);
    assert.throws(() => kit.open([job], place), { reason: 'malformed' }, what);
  }
  const sig = (text) => tampered(envelope(), (e) => { e.sig = text; }, { resign: false });
  const good = envelope().sig;
  for (const text of [good.slice(0, -2), `${good}A`, `${good}==`, good.replace(/.$/, 'B'),
    Buffer.from(good, 'base64url').toString('base64'), '']) {
    assertRefused(kit, [sig(text)], 'malformed');
  }
});

test('a kid with no configured key is unknown-key', async () => {
  const kit = await verifier();
  assertRefused(kit, [tampered(envelope(), (e) => { e.kid = 'sign-2019'; })], 'unknown-key');
  assertRefused(kit, [tampered(envelope(), (e) => { e.kid = 'constructor'; })], 'unknown-key');
});

test('a flipped byte in the signature or any signed member is bad-signature', async () => {
  const kit = await verifier();
  const flipByte = (text) => {
    const bytes = Buffer.from(text, 'base64url');
    bytes[5] ^= 1;
    return b64url(bytes);
  };
  const edits = [
    (e) => { e.sig = flipByte(e.sig); },
    (e) => { e.tenant = 'evil'; },
    (e) => { e.exp += 86400; },
    (e) => { e.args[0].amount = 0.01; },
    (e) => { e.args[0].card_token.ct = flipByte(e.args[0].card_token.ct); },
    (e) => { e.args.push('more'); },
  ];
  for (const edit of edits) {
    assertRefused(kit, [tampered(envelope(), edit, { resign: false })], 'bad-signature');
  }

  const stranger = sodium.crypto_sign_keypair();
  assertRefused(kit, [sign(envelope(), stranger.privateKey)], 'bad-signature');
});

test('an integer beyond 2^53, which JSON.parse rounds, is bad-signature', async () => {
  const kit = await verifier();
  const digits = '12345678901234567891';
  const job = envelope({ args: ['BIG'], sealed: [] });
  const { sig, ...signed } = job;
  const exact = canonicalize(signed).replace('["BIG"]', `[${digits}]`);
  const exactSig = b64url(sodium.crypto_sign_detached(exact, keys.signing.privateKey));
  const payload = JSON.stringify({ ...signed, sig: exactSig }).replace('["BIG"]', `[${digits}]`);
  assertRefused(kit, [JSON.parse(payload)], 'bad-signature');
});

test('a job run as another class or from another queue is wrong-class, wrong-queue', async () => {
  const kit = await verifier();
  const job = envelope();
  assertRefused(kit, [job], 'wrong-class', { className: 'Refund', queue: 'invoices' });
  assertRefused(kit, [job], 'wrong-class', { ...place, payloadClass: 'Refund' });
  assertRefused(kit, [job], 'wrong-queue', { className: 'SendInvoice', queue: 'refunds' });
});

test('a job past exp is expired, unless within the leeway', async () => {
  const job = envelope();
  assert.equal((await verifier({ now: () => job.exp })).open([job], place).id, job.id);
  assertRefused(await verifier({ now: () => job.exp + 1 }), [job], 'expired');
  const lenient = await verifier({ now: () => job.exp + 30, leewaySeconds: 30 });
  assert.equal(lenient.open([job], place).id, job.id);
  assertRefused(await verifier({ now: () => job.exp + 31, leewaySeconds: 30 }), [job], 'expired');
});

test('a sealed value for a workers\' key not held here is unknown-seal-key', async () => {
  const kit = await verifier();
  const job = tampered(envelope(), (e) => { e.args[0].card_token.kid = 'workers-2019'; });
  assertRefused(kit, [job], 'unknown-seal-key');
});

test('a sealed value moved, copied or damaged, even re-signed, is unseal-failed', async () => {
  const kit = await verifier();
  const args = [{ card_token: SECRET, other: 'x' }];
  const base = envelope({ args });
  const sealedValue = base.args[0].card_token;
  const edits = {
    'moved to another field': (e) => {
      e.args[0].other = e.args[0].card_token;
      e.args[0].card_token = 'x';
      e.sealed = ['/0/other'];
    },
    'copied into another job': (e) => { e.id = '019ae5b8-47c0-7c3e-9a4e-000000000000'; },
    'moved to another class': (e) => { e.class = 'Refund'; },
    'ct changed': (e) => { e.args[0].card_token.ct = b64url(Buffer.from('not a ciphertext')); },
    'nonce too short': (e) => { e.args[0].card_token.nonce = sealedValue.nonce.slice(0, 30); },
    'epk all zero (low order)': (e) => { e.args[0].card_token.epk = b64url(new Uint8Array(32)); },
    'extra member': (e) => { e.args[0].card_token.v = 1; },
    'not an object': (e) => { e.args[0].card_token = 'x'; },
  };
  for (const [what, edit] of Object.entries(edits)) {
    const job = tampered(base, edit);
    assert.throws(() => kit.open([job], { queue: 'invoices' }), { reason: 'unseal-failed' }, what);
  }

  const queueMoved = tampered(base, (e) => { e.queue = 'refunds'; });
  assertRefused(kit, [queueMoved], 'unseal-failed', { className: 'SendInvoice', queue: 'refunds' });

  const notUtf8 = tampered(base, (e) => {
    const job = { class: e.class, id: e.id, queue: e.queue };
    e.args[0].card_token = seal(new Uint8Array([0xff, 0xfe]), job, '/0/card_token');
  });
  assertRefused(kit, [notUtf8], 'unseal-failed');
});

test('checks run in the order of ENVELOPE.md: the first reason that applies is given', async () => {
  const job = envelope();
  const late = await verifier({ now: () => job.exp + 1 });
  assertRefused(late, [job], 'wrong-queue', { queue: 'refunds' });
  assertRefused(late, [tampered(job, (e) => { e.kid = 'sign-2019'; })], 'unknown-key');
  const changed = tampered(job, (e) => { e.tenant = 'evil'; }, { resign: false });
  assertRefused(late, [changed], 'bad-signature', { className: 'Refund' });
  const bothSealed = envelope({ args: [{ a: 'one', b: 'two' }], sealed: ['/0/a', '/0/b'] });
  const damagedThenUnknown = tampered(bothSealed, (e) => {
    e.args[0].a.ct = 'AAAA';
    e.args[0].b.kid = 'workers-2019';
  });
  assertRefused(await verifier(), [damagedThenUnknown], 'unknown-seal-key');
});

test('loadKeys reads *.sign.pub and *.seal.key as jobgate keygen writes them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobgate-kit-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { signing, sealing } = await testKeys();
  fs.writeFileSync(path.join(dir, `${SIGNING_KID}.sign.pub`), `${b64url(signing.publicKey)}\n`);
  fs.writeFileSync(path.join(dir, `${SEALING_KID}.seal.key`), `${b64url(sealing.privateKey)}\n`,
    { mode: 0o600 });
  fs.writeFileSync(path.join(dir, `${SEALING_KID}.seal.pub`), `${b64url(sealing.publicKey)}\n`);
  fs.writeFileSync(path.join(dir, 'README'), 'not a key\n');

  const loaded = await loadKeys(dir);
  assert.deepEqual([...loaded.signingKeys.keys()], [SIGNING_KID]);
  assert.deepEqual([...loaded.sealingKeys.keys()], [SEALING_KID]);
  const kit = await Verifier.create({ ...loaded, now: () => NOW });
  assert.equal(kit.open([envelope()], place).args[0].card_token, SECRET);

  fs.writeFileSync(path.join(dir, 'broken.sign.pub'), 'AAAA\n');
  await assert.rejects(loadKeys(dir), /broken\.sign\.pub/);
});

test('job() calls perform with the producer\'s args and this.jobgate; refusals throw', async () => {
  const kit = await verifier();
  const job = envelope();
  const seen = [];
  const definition = kit.job('SendInvoice', async function perform(...args) {
    seen.push({ args, jobgate: this.jobgate, name: this.name });
    return 'done';
  }, { plugins: [], pluginOptions: {} });
  assert.deepEqual(definition.plugins, []);
  const worker = { name: 'worker-1', queue: 'invoices',
    job: { class: 'SendInvoice', args: [job] } };
  const run = (changes) => definition.perform.apply({ ...worker, ...changes }, [job]);

  assert.equal(await run({}), 'done');
  assert.deepEqual(seen[0].args, INVOICE);
  assert.equal(seen[0].jobgate.id, job.id);
  assert.equal(seen[0].jobgate.args, undefined);
  assert.equal(seen[0].name, 'worker-1');
  assert.equal(worker.jobgate, undefined, 'the worker itself is not changed');

  await assert.rejects(run({ queue: 'refunds' }), { reason: 'wrong-queue' });
  await assert.rejects(run({ job: { class: 'Refund', args: [job] } }), { reason: 'wrong-class' });
  // node-resque hands perform a payload's args that are not an array as one argument.
  await assert.rejects(run({ job: { class: 'SendInvoice', args: job } }), { reason: 'unsigned' });
  assert.equal(await run({ job: null }), 'done', 'performInline has no job; the arguments serve');
});

/* ---------- the shared vectors, made by jobgate's own code ---------- */

const VECTORS = path.join(__dirname, '../vectors/envelope-v1.json');
const vectors = JSON.parse(fs.readFileSync(VECTORS, 'utf8'));

function vectorVerifier() {
  return Verifier.create({ signingKeys: vectors.signing_keys, sealingKeys: vectors.sealing_keys,
    now: () => vectors.now });
}

/** Opens the vector's payload as a worker that took it from queue to run as class would. */
function openVector(kit, vector) {
  const payload = JSON.parse(vector.payload);
  return kit.open(payload.args,
    { className: vector.class, queue: vector.queue, payloadClass: payload.class });
}

for (const vector of vectors.cases) {
  test(`shared vector: ${vector.name}`, async () => {
    const kit = await vectorVerifier();
    // JSON.parse rounds integers beyond 2^53, so this kit refuses what the others accept.
    const reason = vector.javascript_reason || (vector.ok ? null : vector.reason);
    if (reason) {
      assert.throws(() => openVector(kit, vector), (error) => {
        assert.ok(error instanceof JobRefused, `expected JobRefused, got ${error}`);
        assert.equal(error.reason, reason, error.message);
        return true;
      });
      return;
    }
    const opened = openVector(kit, vector);
    const { id, tenant, sub, queue, class: className, args } = vector;
    assert.deepStrictEqual(opened, { ...opened, id, tenant, sub, queue, class: className, args });
  });
}

/* ---------- a real node-resque worker ---------- */

/** Polls until check() resolves truthy, or fails after ms. */
async function waitFor(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await h.sleep(20);
  }
}

test('a node-resque Worker runs a vector\'s job with its secret opened and fails an unsigned one',
  { timeout: 30000 }, async () => {
    const kit = await vectorVerifier();
    const signed = vectors.cases.find((c) => c.ok && !c.javascript_reason &&
      JSON.parse(c.payload).args[0].sealed.length > 0);
    const unsigned = vectors.cases.find((c) => c.reason === 'unsigned' && c.queue === signed.queue);
    const redis = await h.startRedis();
    const client = redis.client();
    const ran = [];
    const errors = [];
    const worker = new Worker({ connection: { pkg: 'ioredis', host: '127.0.0.1', port: redis.port,
      namespace: 'resque' }, queues: [signed.queue], timeout: 50 }, {
      [signed.class]: kit.job(signed.class, async function perform(...args) {
        ran.push({ args, id: this.jobgate.id });
      }),
    });
    worker.on('error', (error) => errors.push(String(error)));
    try {
      await worker.connect();
      await worker.start();
      await client.sadd('resque:queues', signed.queue);
      await client.rpush(`resque:queue:${signed.queue}`, signed.payload, unsigned.payload);
      await waitFor(async () => Number(await client.get('resque:stat:processed')) === 1 &&
        Number(await client.get('resque:stat:failed')) === 1, 'both jobs to be worked');

      assert.deepStrictEqual(ran, [{ args: signed.args, id: signed.id }]);
      const failure = JSON.parse(await client.lindex('resque:failed', 0));
      assert.equal(failure.exception, 'JobRefused');
      assert.match(failure.error, /^jobgate: unsigned: /);
      assert.deepEqual(failure.payload.args, JSON.parse(unsigned.payload).args);
      assert.deepEqual(errors, []);
    } finally {
      await worker.end();
      client.disconnect();
      await redis.cleanup();
    }
  });
