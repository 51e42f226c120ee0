'use strict';
/*
 * jobgate worker kit for node-resque: checks the envelope jobgate wraps around every
 * job (workers/ENVELOPE.md, version 1) and opens its sealed values, so that a job body
 * runs only on arguments jobgate wrote, with the producer's secrets in the clear.
 *
 * jobgate signs jobs in batches: one Ed25519 signature covers the root of an RFC 9162
 * Merkle tree of the batch's canonical forms, and each envelope carries the inclusion
 * proof of its own leaf, so a job is checked on its own, with nothing but its signer's
 * public key.
 *
 * A Verifier owns the workers' keys: the Ed25519 public keys that jobgate signs with and
 * the X25519 secret keys that secrets are sealed to. It never changes the arguments it
 * is given; what it returns is a new copy.
 */
const crypto = require('node:crypto');
const fs = require('node:fs/promises');
const path = require('node:path');
const sodium = require('libsodium-wrappers');

const ENVELOPE_VERSION = 1;
const SEAL_CONTEXT = Buffer.from('jobgate-seal-v1', 'utf8');
const TREE_CONTEXT = Buffer.from('jobgate-tree-v1', 'utf8');
const KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
const HASH_BYTES = 32;
const NONCE_BYTES = 24;
/* RFC 9162 tells a leaf from an interior node by the byte that precedes what it hashes. */
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);
/* The largest tree a proof may name, and so the longest path (2^16 leaves, 16 levels). */
const PROOF_MAX_SIZE = 65536;
const PROOF_MAX_PATH = 16;
const KID = /^[A-Za-z0-9_-]{1,64}$/;
const KEY_FILE = /^(.*)\.(sign\.pub|seal\.key)$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

const isString = (value) => typeof value === 'string';
const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/* Every envelope member with the test its value must pass. */
const ENVELOPE_MEMBERS = {
  jobgate: Number.isInteger,
  id: isString,
  tenant: isString,
  sub: isString,
  queue: isString,
  class: isString,
  iat: Number.isInteger,
  exp: Number.isInteger,
  args: Array.isArray,
  sealed: (value) => Array.isArray(value) && value.every(isString),
  kid: isString,
  proof: isObject,
  sig: isString,
};

const PROOF_MEMBERS = ['index', 'path', 'size'];
const SEALED_MEMBERS = ['ct', 'epk', 'kid', 'nonce'];

/**
 * Thrown when a job is refused. reason is one of the reason words of ENVELOPE.md
 * ("unsigned", "bad-signature", ...); the message never holds a secret's value.
 */
class JobRefused extends Error {
  constructor(reason, detail) {
    super(`jobgate: ${reason}: ${detail}`);
    this.name = 'JobRefused';
    this.reason = reason;
  }
}

function refuse(reason, detail) {
  throw new JobRefused(reason, detail);
}

/* Text from an unchecked envelope, quoted and cut short for a refusal's detail. */
function quoted(text) {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}

/**
 * The RFC 8785 (JCS) form of a JSON value. Throws a TypeError for what JSON cannot
 * hold: numbers that are not finite, strings with lone surrogates, and non-JSON types.
 */
function canonicalize(value) {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonicalize: ${value} is not a JSON number`);
    return String(value);
  }
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw new TypeError('canonicalize: a string holds a lone surrogate');
    // JSON.stringify escapes exactly what RFC 8785 escapes, in the same forms.
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(',')}]`;
  if (isObject(value)) {
    // The default sort compares UTF-16 code units, the order RFC 8785 asks for.
    const members = Object.keys(value).sort()
      .map((name) => `${canonicalize(name)}:${canonicalize(value[name])}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`canonicalize: a ${typeof value} is not a JSON value`);
}

/**
 * Bytes from unpadded base64url that re-encodes to the same text (so no stray bits),
 * of the given length when one is given; null for anything else.
 */
function decodeBase64url(text, length) {
  if (!isString(text) || !BASE64URL.test(text)) return null;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) return null;
  return length === undefined || bytes.length === length ? bytes : null;
}

/** A 32-byte key given as base64url text or bytes; throws naming the key, never its value. */
function keyBytes(key, what, kid) {
  const bytes = key instanceof Uint8Array ? key : decodeBase64url(key, KEY_BYTES);
  if (!bytes || bytes.length !== KEY_BYTES) {
    throw new TypeError(`jobgate: ${what} "${kid}" is not ${KEY_BYTES} bytes (base64url or bytes)`);
  }
  return Uint8Array.from(bytes);
}

function keyEntries(keys) {
  return keys instanceof Map ? [...keys] : Object.entries(keys);
}

/** Whether object has exactly the members names, no more. */
function hasExactly(object, names) {
  return Object.keys(object).length === names.length &&
    names.every((name) => Object.hasOwn(object, name));
}

/**
 * The decoded hashes of a proof's path when the proof is exactly index, size and path as
 * ENVELOPE.md describes them; null for anything else. Whether the path's length fits
 * index and size is left to rootFromPath, as RFC 9162 finds it.
 */
function proofPath(proof) {
  if (!hasExactly(proof, PROOF_MEMBERS)) return null;
  const { index, size, path: hashes } = proof;
  if (!Number.isInteger(size) || size < 1 || size > PROOF_MAX_SIZE) return null;
  if (!Number.isInteger(index) || index < 0 || index >= size) return null;
  if (!Array.isArray(hashes) || hashes.length > PROOF_MAX_PATH) return null;
  const decoded = hashes.map((hash) => decodeBase64url(hash, HASH_BYTES));
  return decoded.every(Boolean) ? decoded : null;
}

function sha256(...parts) {
  const hash = crypto.createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/**
 * The root that hashes (nearest first) lead to from leaf, the leaf at index of a tree of
 * size leaves, computed as RFC 9162 section 2.1.3.2 verifies an inclusion proof; null
 * when the path is too short or too long for index and size. index and size are at most
 * PROOF_MAX_SIZE, well inside the 32 bits that JavaScript's shifts work on.
 */
function rootFromPath(leaf, index, size, hashes) {
  let position = index;
  let last = size - 1;
  let hash = leaf;
  for (const sibling of hashes) {
    if (last === 0) return null;
    if (position % 2 === 1 || position === last) {
      hash = sha256(NODE_PREFIX, sibling, hash);
      // On the tree's right edge a node may have no sibling: it moves up as it is.
      while (position % 2 === 0 && position !== 0) {
        position >>= 1;
        last >>= 1;
      }
    } else {
      hash = sha256(NODE_PREFIX, hash, sibling);
    }
    position >>= 1;
    last >>= 1;
  }
  return last === 0 ? hash : null;
}

/** The RFC 6901 reference tokens of pointer, or null when it is not a pointer into args. */
function pointerTokens(pointer) {
  if (!pointer.startsWith('/')) return null;
  const tokens = pointer.slice(1).split('/');
  if (tokens.some((token) => /~([^01]|$)/.test(token))) return null;
  return tokens.map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function escapeToken(name) {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The value pointer names in args, or undefined when there is none. */
function resolvePointer(args, pointer) {
  const tokens = pointerTokens(pointer);
  if (!tokens) return undefined;
  let value = args;
  for (const token of tokens) {
    if (Array.isArray(value)) {
      if (!ARRAY_INDEX.test(token) || Number(token) >= value.length) return undefined;
      value = value[Number(token)];
    } else if (isObject(value) && Object.hasOwn(value, token)) {
      value = value[token];
    } else {
      return undefined;
    }
  }
  return value;
}

/** The envelope in a job's args; refuses a job jobgate did not write or cannot be read. */
function envelopeOf(args) {
  const envelope = Array.isArray(args) && args.length === 1 ? args[0] : undefined;
  if (!isObject(envelope) || !Object.hasOwn(envelope, 'jobgate')) {
    refuse('unsigned', 'the job\'s args are not one object with a "jobgate" member');
  }
  if (envelope.jobgate !== ENVELOPE_VERSION) {
    const version = Number.isInteger(envelope.jobgate) ? envelope.jobgate : 'not an integer';
    refuse('unsupported-version', `version ${version}; this kit reads ${ENVELOPE_VERSION}`);
  }
  return envelope;
}

/** Refuses an envelope whose members are not exactly those of version 1, well typed. */
function checkMembers(envelope) {
  for (const name of Object.keys(ENVELOPE_MEMBERS)) {
    if (!Object.hasOwn(envelope, name)) refuse('malformed', `member "${name}" is missing`);
    if (!ENVELOPE_MEMBERS[name](envelope[name])) {
      refuse('malformed', `member "${name}" has the wrong type`);
    }
  }
  const extra = Object.keys(envelope).find((name) => !Object.hasOwn(ENVELOPE_MEMBERS, name));
  if (extra !== undefined) refuse('malformed', `member ${quoted(extra)} is not allowed`);
  if (!decodeBase64url(envelope.sig, SIGNATURE_BYTES)) {
    refuse('malformed', `"sig" is not ${SIGNATURE_BYTES} bytes of unpadded base64url`);
  }
  if (!proofPath(envelope.proof)) {
    refuse('malformed', `"proof" is not an index, a size and a path of ${HASH_BYTES}-byte hashes`);
  }
  for (const pointer of envelope.sealed) {
    if (resolvePointer(envelope.args, pointer) === undefined) {
      refuse('malformed', `sealed entry ${quoted(pointer)} does not point to a value in "args"`);
    }
  }
}

/** Refuses a job run as another class or taken from another queue than its envelope's. */
function checkPlacement(envelope, { className, queue, payloadClass }) {
  if (payloadClass != null && payloadClass !== envelope.class) {
    refuse('wrong-class', `the payload is of class "${payloadClass}", not "${envelope.class}"`);
  }
  if (className != null && className !== envelope.class) {
    refuse('wrong-class', `run as "${className}", the envelope is for "${envelope.class}"`);
  }
  if (queue != null && queue !== envelope.queue) {
    refuse('wrong-queue', `taken from queue "${queue}", the envelope is for "${envelope.queue}"`);
  }
}

/** A copy of args in which the value at each pointer of opened is replaced by its opened string. */
function copyOpened(value, pointer, opened) {
  if (opened.has(pointer)) return opened.get(pointer);
  if (Array.isArray(value)) {
    return value.map((item, index) => copyOpened(item, `${pointer}/${index}`, opened));
  }
  if (isObject(value)) {
    return Object.fromEntries(Object.entries(value)
      .map(([name, item]) => [name, copyOpened(item, `${pointer}/${escapeToken(name)}`, opened)]));
  }
  return value;
}

/** The decoded epk, nonce and ct of a sealed value of exactly its four members, or null. */
function sealedParts(value) {
  if (!isObject(value) || !hasExactly(value, SEALED_MEMBERS) || !isString(value.kid)) return null;
  const epk = decodeBase64url(value.epk, KEY_BYTES);
  const nonce = decodeBase64url(value.nonce, NONCE_BYTES);
  const ct = decodeBase64url(value.ct);
  return epk && nonce && ct ? { epk, nonce, ct } : null;
}

class Verifier {
  /**
   * The way to make a Verifier: waits for libsodium, then checks every key.
   * signingKeys maps kid to an Ed25519 public key, sealingKeys maps kid to an X25519
   * secret key (plain objects or Maps; each key 32 bytes, as base64url text or a
   * Uint8Array). now returns the current Unix time in seconds.
   */
  static async create({ signingKeys = {}, sealingKeys = {}, leewaySeconds = 0, now } = {}) {
    await sodium.ready;
    return new Verifier({ signingKeys, sealingKeys, leewaySeconds, now });
  }

  constructor({ signingKeys, sealingKeys, leewaySeconds, now }) {
    if (!Number.isFinite(leewaySeconds) || leewaySeconds < 0) {
      throw new TypeError('jobgate: leewaySeconds must be a number of seconds, 0 or more');
    }
    this.signingKeys = new Map(keyEntries(signingKeys)
      .map(([kid, key]) => [kid, keyBytes(key, 'signing key', kid)]));
    this.sealingKeys = new Map(keyEntries(sealingKeys).map(([kid, key]) => {
      const secretKey = keyBytes(key, 'sealing key', kid);
      return [kid, { secretKey, publicKey: sodium.crypto_scalarmult_base(secretKey) }];
    }));
    this.leewaySeconds = leewaySeconds;
    this.now = now || (() => Math.floor(Date.now() / 1000));
  }

  /**
   * Checks a job's args (the payload's "args" array) in the order of ENVELOPE.md and
   * returns { id, tenant, sub, queue, class, iat, exp, kid, args } with args the
   * producer's, every sealed value opened. context may name the className the worker
   * runs the job as, the queue it took it from and the payload's own payloadClass;
   * each one given is checked. Throws JobRefused.
   */
  open(args, context = {}) {
    const envelope = envelopeOf(args);
    checkMembers(envelope);
    this.checkSignature(envelope);
    checkPlacement(envelope, context);
    this.checkExpiry(envelope);
    const opened = this.openSealed(envelope);
    const { id, tenant, sub, queue, iat, exp, kid } = envelope;
    return { id, tenant, sub, queue, class: envelope.class, iat, exp, kid,
      args: copyOpened(envelope.args, '', opened) };
  }

  /**
   * A node-resque job definition for className: options (plugins, pluginOptions, ...)
   * with a perform that opens the job, then calls perform with the producer's
   * arguments. perform's `this` is the worker with one more member, `jobgate`: the
   * envelope's id, tenant, sub, queue, class, iat, exp and kid. A refused job throws,
   * so node-resque records it as failed with the reason.
   */
  job(className, perform, options = {}) {
    const verifier = this;
    return {
      ...options,
      perform: async function performOpened(...args) {
        // node-resque passes a payload's args that are not an array as one argument;
        // the payload as written, when there is one, is what the envelope rules read.
        const payloadArgs = this.job ? this.job.args : args;
        const { args: producerArgs, ...metadata } = verifier.open(payloadArgs,
          { className, queue: this.queue, payloadClass: this.job?.class });
        const context = Object.create(this, { jobgate: { value: Object.freeze(metadata) } });
        return perform.apply(context, producerArgs);
      },
    };
  }

  checkSignature(envelope) {
    const publicKey = this.signingKeys.get(envelope.kid);
    if (!publicKey) refuse('unknown-key', `no signing key ${quoted(envelope.kid)} is configured`);

    // The proof is not signed: it only says how to reach the root that is.
    const { proof, sig, ...signed } = envelope;
    let canonical;
    try {
      canonical = Buffer.from(canonicalize(signed), 'utf8');
    } catch {
      // jobgate signs only what has a canonical form; JSON.parse can yield what has none.
      refuse('bad-signature', 'the envelope has no canonical form');
    }
    const leaf = sha256(LEAF_PREFIX, canonical);
    const root = rootFromPath(leaf, proof.index, proof.size, proofPath(proof));
    if (!root) refuse('bad-signature', 'the proof\'s path does not fit its index and size');
    const signature = decodeBase64url(sig, SIGNATURE_BYTES);
    const message = Buffer.concat([TREE_CONTEXT, root]);
    if (!sodium.crypto_sign_verify_detached(signature, message, publicKey)) {
      refuse('bad-signature', `the signature by "${envelope.kid}" does not verify`);
    }
  }

  checkExpiry(envelope) {
    const now = this.now();
    if (now > envelope.exp + this.leewaySeconds) {
      refuse('expired', `the job expired at ${envelope.exp} and it is now ${now}`);
    }
  }

  /**
   * Opens every sealed value and returns a Map from its pointer to the secret. Every
   * key is looked up before any value is opened, so that a missing key is reported as
   * such even when another value is damaged.
   */
  openSealed(envelope) {
    const sealedValues = envelope.sealed
      .map((pointer) => [pointer, resolvePointer(envelope.args, pointer)]);
    for (const [pointer, value] of sealedValues) {
      if (isObject(value) && isString(value.kid) && !this.sealingKeys.has(value.kid)) {
        refuse('unknown-seal-key', `sealed value ${pointer} is sealed to key ${quoted(value.kid)}`);
      }
    }
    return new Map(sealedValues
      .map(([pointer, value]) => [pointer, this.unseal(envelope, pointer, value)]));
  }

  /** The secret in one sealed value, opened in this job's context. */
  unseal(envelope, pointer, value) {
    const parts = sealedParts(value);
    if (!parts) refuse('unseal-failed', `sealed value ${pointer} is not well formed`);

    const { secretKey, publicKey } = this.sealingKeys.get(value.kid);
    const { id, queue } = envelope;
    const context = canonicalize({ class: envelope.class, field: pointer, id, queue });
    let shared;
    let key;
    try {
      // libsodium refuses an all-zero shared secret (a low-order epk) by throwing.
      shared = sodium.crypto_scalarmult(secretKey, parts.epk);
      const message = Buffer.concat([SEAL_CONTEXT, parts.epk, publicKey]);
      key = sodium.crypto_generichash(KEY_BYTES, message, shared);
      const plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, parts.ct,
        Buffer.from(context, 'utf8'), parts.nonce, key);
      return new TextDecoder('utf-8', { fatal: true }).decode(plain);
    } catch {
      return refuse('unseal-failed', `sealed value ${pointer} does not open in this job`);
    } finally {
      if (shared) sodium.memzero(shared);
      if (key) sodium.memzero(key);
    }
  }
}

/**
 * Reads every NAME.sign.pub (Ed25519 public key) and NAME.seal.key (X25519 secret key)
 * in dir, as `jobgate keygen` writes them, and returns { signingKeys, sealingKeys },
 * Maps from NAME to the key's bytes, ready for Verifier.create.
 */
async function loadKeys(dir) {
  const signingKeys = new Map();
  const sealingKeys = new Map();
  for (const file of (await fs.readdir(dir)).sort()) {
    const match = KEY_FILE.exec(file);
    if (!match) continue;
    const [, kid, kind] = match;
    if (!KID.test(kid)) throw new Error(`jobgate: key file ${file}: "${kid}" is not a key id`);
    const text = (await fs.readFile(path.join(dir, file), 'utf8')).replace(/\r?\n$/, '');
    const bytes = decodeBase64url(text, KEY_BYTES);
    if (!bytes) throw new Error(`jobgate: key file ${file} is not ${KEY_BYTES} bytes of base64url`);
    (kind === 'sign.pub' ? signingKeys : sealingKeys).set(kid, bytes);
  }
  return { signingKeys, sealingKeys };
}

module.exports = { Verifier, JobRefused, loadKeys, canonicalize };
