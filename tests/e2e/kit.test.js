'use strict';
/*
 * The JavaScript worker kit (workers/node-resque) against workers/ENVELOPE.md: its
 * canonical JSON against the RFC 8785 reference data, envelopes built here as jobgate
 * builds them (signed alone or in batches under one tree, with sealed values) and then
 * tampered with, the shared vectors that jobgate's own code made
 * (tests/vectors/envelope-v1.json), and a real node-resque Worker that runs a verified
 * job and fails an unsigned one.
 */
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
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

const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts)).digest();
const leafHash = (data) => sha256(Buffer.from([0]), Buffer.from(data));
const nodeHash = (left, right) => sha256(Buffer.from([1]), left, right);

/** The size of the left subtree of a tree of n > 1 leaves: the largest power of two below n. */
function leftSize(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(leaves), the root of RFC 9162 section 2.1.1. */
function treeHash(leaves) {
  if (leaves.length === 1) return leaves[0];
  const k = leftSize(leaves.length);
  return nodeHash(treeHash(leaves.slice(0, k)), treeHash(leaves.slice(k)));
}

/** PATH(m, leaves), the inclusion path of RFC 9162 section 2.1.3.1, nearest hash first. */
function inclusionPath(leaves, m) {
  if (leaves.length === 1) return [];
  const k = leftSize(leaves.length);
  return m < k
    ? [...inclusionPath(leaves.slice(0, k), m), treeHash(leaves.slice(k))]
    : [...inclusionPath(leaves.slice(k), m - k), treeHash(leaves.slice(0, k))];
}

/** The signature over a tree's root: Ed25519 over "jobgate-tree-v1" || root, in base64url. */
function signRoot(root, signingKey) {
  return b64url(sodium.crypto_sign_detached(Buffer.concat([Buffer.from('jobgate-tree-v1'), root]),
    signingKey));
}

/** The canonical form an envelope's leaf hashes: everything but proof and sig. */
function canonicalOf(envelope) {
  const { proof, sig, ...signed } = envelope;
  return canonicalize(signed);
}

/**
 * Signs envelopes as one batch, as jobgate signs the jobs of one turn of its event loop:
 * returns them with their proofs into one tree and the signature over its root, by the
 * test signer (or by signingKey).
 */
function signBatch(envelopes, signingKey = keys.signing.privateKey) {
  const leaves = envelopes.map((e) => leafHash(canonicalOf(e)));
  const sig = signRoot(treeHash(leaves), signingKey);
  return envelopes.map((e, index) => ({ ...e, sig,
    proof: { index, path: inclusionPath(leaves, index).map(b64url), size: leaves.length } }));
}

/** Returns envelope signed alone, by the test signer (or by signingKey). */
function sign(envelope, signingKey) {
  return signBatch([envelope], signingKey)[0];
}

/**
 * An unsigned envelope for the producer's args; the string at each pointer of sealed is
 * sealed first. members replace the defaults.
 */
const INVOICE = [{ invoice_id: 1042, amount: 19.99, card_token: SECRET }];

function unsignedEnvelope({ args = INVOICE, sealed = ['/0/card_token'], ...members } = {}) {
  const built = { jobgate: 1, id: '019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a63', tenant: 'acme',
    sub: 'billing-service', queue: 'invoices', class: 'SendInvoice', iat: NOW - 60, exp: NOW + 3600,
    args: structuredClone(args), sealed, kid: SIGNING_KID, ...members };
  for (const pointer of sealed) {
    const [parent, name] = pointerParent(built.args, pointer);
    parent[name] = seal(parent[name], built, pointer);
  }
  return built;
}

/** The same, signed alone. */
function envelope(members) {
  return sign(unsignedEnvelope(members));
}

/** count envelopes of distinct ids, signed as one batch; members as for unsignedEnvelope. */
function batch(count, members = {}) {
  return signBatch(Array.from({ length: count }, (_, i) => unsignedEnvelope({
    id: `019ae5b8-47c0-7c3e-9a4e-${String(i).padStart(12, '0')}`, ...members })));
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
  const exact = canonicalOf(job).replace('["BIG"]', `[${digits}]`);
  const exactSig = signRoot(leafHash(exact), keys.signing.privateKey);
  const payload = JSON.stringify({ ...job, sig: exactSig }).replace('["BIG"]', `[${digits}]`);
  assertRefused(kit, [JSON.parse(payload)], 'bad-signature');
});

/* ---------- proofs ---------- */

test('every job of a batch opens on its own, in trees of many shapes up to 33 jobs', async () => {
  const kit = await verifier();
  for (const size of [2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 33]) {
    const jobs = batch(size, { sealed: [], args: [{ n: size }] });
    assert.equal(new Set(jobs.map((job) => job.sig)).size, 1, 'one signature for the batch');
    for (const job of jobs) {
      assert.equal(kit.open([job], place).id, job.id, `leaf ${job.proof.index} of ${size}`);
    }
  }
  const [first, second] = batch(2);
  assert.equal(kit.open([second], place).args[0].card_token, SECRET);
  assert.equal(kit.open([first], place).args[0].card_token, SECRET);
});

test('a tree of 65536 jobs, the largest, gives paths of 16 hashes that verify', async () => {
  const kit = await verifier();
  const size = 65536;
  // The other leaves only need to be hashes; the kit never sees their jobs.
  const leaves = Array.from({ length: size }, (_, i) => sha256(Buffer.from(`job ${i}`)));
  for (const index of [0, 40000, size - 1]) {
    const job = unsignedEnvelope({ sealed: [], args: [index] });
    leaves[index] = leafHash(canonicalOf(job));
    const path = inclusionPath(leaves, index).map(b64url);
    const signed = { ...job, proof: { index, path, size },
      sig: signRoot(treeHash(leaves), keys.signing.privateKey) };
    assert.equal(path.length, 16);
    assert.deepEqual(kit.open([signed], place).args, [index]);
  }
});

test('a proof that is not exactly an index, a size and a path of hashes is malformed', async () => {
  const kit = await verifier();
  const job = batch(5)[4];
  const hash = job.proof.path[0];
  const edits = {
    'proof null': (e) => { e.proof = null; },
    'proof an array': (e) => { e.proof = [e.proof.index, e.proof.path, e.proof.size]; },
    'proof a string': (e) => { e.proof = JSON.stringify(e.proof); },
    'no index': (e) => { delete e.proof.index; },
    'no size': (e) => { delete e.proof.size; },
    'no path': (e) => { delete e.proof.path; },
    'index as a string': (e) => { e.proof.index = '4'; },
    'index negative': (e) => { e.proof.index = -1; },
    'size as a real': (e) => { e.proof.size = 5.5; },
    'size as a string': (e) => { e.proof.size = '5'; },
    'size null': (e) => { e.proof.size = null; },
    'path an object': (e) => { e.proof.path = { 0: hash }; },
    'path a string': (e) => { e.proof.path = hash; },
    'a hash not a string': (e) => { e.proof.path = [null]; },
    'a hash as bytes': (e) => { e.proof.path = [[...Buffer.from(hash, 'base64url')]]; },
    'a hash padded': (e) => { e.proof.path = [`${hash}=`]; },
    'a hash in standard base64': (e) => {
      e.proof.path = [Buffer.alloc(32, 0xfb).toString('base64').replace(/=+$/, '')];
    },
    'a hash with stray bits': (e) => { e.proof.path = [`${hash.slice(0, -1)}B`]; },
    'a hash of 33 bytes': (e) => { e.proof.path = [b64url(new Uint8Array(33))]; },
    'a hash empty': (e) => { e.proof.path = ['']; },
    '17 hashes in the largest tree': (e) => {
      e.proof = { index: 0, path: Array(17).fill(hash), size: 65536 };
    },
  };
  for (const [what, edit] of Object.entries(edits)) {
    assert.throws(() => kit.open([tampered(job, edit, { resign: false })], place),
      { reason: 'malformed' }, what);
  }
  // JSON.parse makes "__proto__" an own member, which is one member too many.
  const text = JSON.stringify(job).replace('"proof":{', '"proof":{"__proto__":{},');
  assertRefused(kit, [JSON.parse(text)], 'malformed');
  // A size JSON.parse turned into Infinity is not an integer.
  assertRefused(kit, [JSON.parse(JSON.stringify(job).replace('"size":5', '"size":1e400'))],
    'malformed');
});

test('a proof that does not lead to the signed root is bad-signature', async () => {
  const kit = await verifier();
  const jobs = batch(5);
  const other = batch(5, { tenant: 'other' });
  const edits = {
    'two hashes swapped': (e) => { e.proof.path.unshift(...e.proof.path.splice(1, 1)); },
    'a hash from another tree': (e) => { e.proof.path[2] = other[0].proof.path[2]; },
    'the index of the left sibling': (e) => { e.proof.index = 0; },
    'an index the path walks in another order': (e) => { e.proof.index = 3; },
    'no path': (e) => { e.proof.path = []; },
    'the path of the leaf beside it': (e) => { e.proof = jobs[0].proof; },
    'the signature of another batch': (e) => { e.sig = other[1].sig; },
  };
  for (const [what, edit] of Object.entries(edits)) {
    assert.throws(() => kit.open([tampered(jobs[1], edit, { resign: false })], place),
      { reason: 'bad-signature' }, what);
  }
  const lengths = {
    'a lone job with a hash': (e) => { e.proof.path = [b64url(new Uint8Array(32))]; },
    'a last leaf read as one of 6 (sn not 0 at the end)': (e) => { e.proof.size = 6; },
    'a last leaf read as one of 3 (sn 0 before the path ends)': (e) => {
      e.proof = { index: 2, path: [...e.proof.path, e.proof.path[0]], size: 3 };
    },
  };
  for (const [what, edit] of Object.entries(lengths)) {
    const job = what.startsWith('a lone') ? envelope() : jobs[4];
    const changed = tampered(job, edit, { resign: false });
    assert.throws(() => kit.open([changed], place),
      (error) => error.reason === 'bad-signature' && /does not fit/.test(error.message), what);
  }
  // Malformed is decided before the key is looked up; a bad path only once it is.
  const unknownKey = tampered(jobs[1], (e) => { e.kid = 'sign-2019'; e.proof.index = 5; },
    { resign: false });
  assertRefused(kit, [unknownKey], 'malformed');
  const unknownKeyShortPath = tampered(jobs[1], (e) => { e.kid = 'sign-2019'; e.proof.path = []; },
    { resign: false });
  assertRefused(kit, [unknownKeyShortPath], 'unknown-key');
});

test('another index and size that walk the path to the same root verify as well', async () => {
  // ENVELOPE.md: the numbers are not signed; the last of five leaves reads as leaf 1 of 2.
  const kit = await verifier();
  const last = batch(5)[4];
  const reread = tampered(last, (e) => { e.proof.index = 1; e.proof.size = 2; }, { resign: false });
  assert.equal(kit.open([reread], place).id, last.id);
  assert.equal(kit.open([reread], place).proof, undefined, 'the proof is not metadata');
  // Leaf 1 of 5 walks its three hashes as leaf 1 of 6, 7 or 8 would.
  const second = batch(5)[1];
  for (const size of [6, 7, 8]) {
    const grown = tampered(second, (e) => { e.proof.size = size; }, { resign: false });
    assert.equal(kit.open([grown], place).id, second.id, `as one of ${size}`);
  }
  // JSON.parse reads 5.0 as 5, so this kit takes an integral real in a proof, as it does in
  // iat and exp; jobgate verify refuses it as malformed. The walk is the same either way.
  const real = JSON.parse(JSON.stringify(second).replace('"size":5', '"size":5.0'));
  assert.equal(kit.open([real], place).id, second.id);
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
