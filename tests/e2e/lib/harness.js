'use strict';
/*
 * Shared helpers for the end-to-end tests: a throwaway redis-server, key material
 * made at test time, a config derived from config/example.json, the real jobgate
 * binary, our own JWT minting, HTTP/1.1, HTTPS, h2c and h2 clients, and the
 * JavaScript worker kit to open the jobs jobgate stores.
 *
 * Nothing here is committed key material: every secret, key pair and certificate is
 * generated into a mkdtemp directory that is removed when the test file ends.
 */
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');
const kit = require('../../../workers/node-resque/jobgate.js');

const REPO = path.resolve(__dirname, '..', '..', '..');
const EXAMPLE_CONFIG = path.join(REPO, 'config', 'example.json');
const ANY_ARGS_SCHEMA = path.join(__dirname, '..', 'schemas', 'any-args.json');
const PROBLEM = 'urn:jobgate:problem:';
const ISSUER = 'https://auth.example.test';
const AUDIENCE = 'jobgate';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The jobgate binary, from $JOBGATE (relative paths are taken from the repository). */
function jobgateBinary() {
  const configured = process.env.JOBGATE || 'build/jobgate';
  const binary = path.isAbsolute(configured) ? configured : path.resolve(REPO, configured);
  if (!fs.existsSync(binary)) throw new Error(`jobgate binary not found at ${binary} (set JOBGATE)`);
  return binary;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Waits for a child process to exit, or for ms; returns whether it exited. */
function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Sends one inline Redis command over a fresh socket; resolves with the first reply line. */
function rawRedisCommand(port, command, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (value) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(null));
    socket.on('error', () => done(null));
    socket.on('close', () => done(data === '' ? null : data.split('\r\n')[0]));
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n')) done(data.split('\r\n')[0]);
    });
  });
}

/**
 * Starts redis-server on port (a free one when omitted) and waits until it answers
 * PING. Returns { port, client(), stop(), restart() }; stop() is SHUTDOWN NOSAVE,
 * falling back to SIGKILL.
 */
async function startRedis(port) {
  port = port || (await freePort());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobgate-redis-'));
  const redis = { port, dir, process: null, log: [] };

  redis.start = async () => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--protected-mode', 'yes'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.on('data', (d) => redis.log.push(d.toString()));
    child.stderr.on('data', (d) => redis.log.push(d.toString()));
    redis.process = child;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      if ((await rawRedisCommand(port, 'PING')) === '+PONG') return redis;
      await sleep(20);
    }
    child.kill('SIGKILL');
    throw new Error(`redis-server on port ${port} did not answer PING:\n${redis.log.join('')}`);
  };

  redis.stop = async () => {
    const child = redis.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await rawRedisCommand(port, 'SHUTDOWN NOSAVE');
    if (!(await waitExit(child, 3000))) {
      child.kill('SIGKILL');
      await waitExit(child, 3000);
    }
  };

  redis.restart = async () => {
    await redis.stop();
    await redis.start();
  };

  /** An ioredis client for the test's own reads; close it with quit() or disconnect(). */
  redis.client = () =>
    new Redis({ host: '127.0.0.1', port, lazyConnect: false, maxRetriesPerRequest: 1,
      enableOfflineQueue: true, retryStrategy: () => null });

  redis.cleanup = async () => {
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };

  return redis.start();
}

/**
 * Every key in Redis with its type and full value, sorted by key, so that two
 * snapshots compare with deepEqual.
 */
async function snapshotRedis(client) {
  const keys = (await client.keys('*')).sort();
  const snapshot = {};
  for (const key of keys) {
    const type = await client.type(key);
    let value;
    switch (type) {
      case 'string': value = await client.get(key); break;
      case 'list': value = await client.lrange(key, 0, -1); break;
      case 'set': value = (await client.smembers(key)).sort(); break;
      case 'zset': value = await client.zrange(key, 0, -1, 'WITHSCORES'); break;
      case 'hash': value = await client.hgetall(key); break;
      case 'stream': value = await client.xrange(key, '-', '+'); break;
      default: value = null;
    }
    snapshot[key] = { type, value };
  }
  return snapshot;
}

/**
 * Key material for every algorithm the gateway supports, in a fresh mkdtemp
 * directory: HMAC secrets (64 random bytes, enough for HS512), an RSA 2048 and an
 * EC P-256 key pair (public keys as SPKI PEM), and a self-signed TLS certificate
 * for 127.0.0.1.
 */
function makeKeyMaterial() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobgate-e2e-'));
  const keys = {};
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    const secret = crypto.randomBytes(64);
    const file = path.join(dir, `${alg.toLowerCase()}.key`);
    fs.writeFileSync(file, secret, { mode: 0o600 });
    keys[alg] = { kid: `test-${alg.toLowerCase()}`, alg, file, secret };
  }
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (const [alg, pair] of [['RS256', rsa], ['ES256', ec]]) {
    const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' });
    const privatePem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' });
    const file = path.join(dir, `${alg.toLowerCase()}.pub.pem`);
    const privateFile = path.join(dir, `${alg.toLowerCase()}.key.pem`);
    fs.writeFileSync(file, publicPem);
    fs.writeFileSync(privateFile, privatePem, { mode: 0o600 });
    keys[alg] = { kid: `test-${alg.toLowerCase()}`, alg, file, privateFile, publicPem,
      privateKey: pair.privateKey, publicKey: pair.publicKey };
  }

  // The envelope's keys, as `jobgate keygen` makes them: jobgate reads dev-sign.sign.key
  // and dev-workers.seal.pub; workers load the directory for the other two.
  const envelopeDir = path.join(dir, 'envelope');
  fs.mkdirSync(envelopeDir);
  for (const [kind, kid] of [['sign', 'dev-sign'], ['seal', 'dev-workers']]) {
    execFileSync(jobgateBinary(), ['keygen', '--kind', kind, '--kid', kid, '--dir', envelopeDir],
      { stdio: 'ignore' });
  }

  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'tls-key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { dir, keys, envelopeDir, certFile, keyFile, cert: fs.readFileSync(certFile),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Writes a config derived from config/example.json into material.dir: cleartext and
 * TLS listeners on free ports, the given Redis port, two threads, a key for every
 * algorithm. overrides is deep-merged on top (null deletes a member). Returns
 * { path, config, http, tls } with the listener ports.
 */
async function writeConfig(material, redisPort, overrides = {}, name = 'jobgate.json') {
  const config = JSON.parse(fs.readFileSync(EXAMPLE_CONFIG, 'utf8'));
  const httpPort = await freePort();
  const tlsPort = await freePort();
  config.threads = 2;
  config.listen = {
    cleartext: `127.0.0.1:${httpPort}`,
    tls: { address: `127.0.0.1:${tlsPort}`, certificate_file: material.certFile,
      key_file: material.keyFile },
  };
  config.redis.port = redisPort;
  config.redis.host = '127.0.0.1';
  config.redis.reconnect_max_ms = 400;
  config.auth.issuer = ISSUER;
  config.auth.audience = AUDIENCE;
  config.auth.keys = Object.values(material.keys).map(({ kid, alg, file }) => ({ kid, alg, file }));
  config.envelope.signing_key.file = path.join(material.envelopeDir, 'dev-sign.sign.key');
  config.envelope.sealing_keys['dev-workers'].file =
    path.join(material.envelopeDir, 'dev-workers.seal.pub');
  // Tests about anything but schemas send all kinds of arguments; schema.test.js
  // points the classes at the real schemas in schemas/.
  config.classes = Object.fromEntries(Object.keys(config.classes)
    .map((name) => [name, { schema: ANY_ARGS_SCHEMA }]));
  // Tenants are unlimited unless a test sets their rates: a rate key that expires on
  // its own would otherwise show up in every snapshot of Redis.
  delete config.tenants;
  merge(config, overrides);
  const file = path.join(material.dir, name);
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return { path: file, config, httpPort, tlsPort };
}

function merge(target, overrides) {
  for (const [key, value] of Object.entries(overrides)) {
    if (value === null) delete target[key];
    else if (typeof value === 'object' && !Array.isArray(value) && typeof target[key] === 'object' &&
      target[key] !== null && !Array.isArray(target[key])) merge(target[key], value);
    else target[key] = value;
  }
  return target;
}

/**
 * Starts `jobgate serve --config configPath` and waits until GET /readyz answers 200
 * on the cleartext listener. stderr JSON lines are collected in gate.logs (parsed)
 * and gate.stderr (raw text).
 */
async function startJobgate(configInfo, { ready = true, timeoutMs = 8000 } = {}) {
  const child = spawn(jobgateBinary(), ['serve', '--config', configInfo.path],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const gate = {
    process: child,
    httpPort: configInfo.httpPort,
    tlsPort: configInfo.tlsPort,
    base: `http://127.0.0.1:${configInfo.httpPort}`,
    tlsBase: `https://127.0.0.1:${configInfo.tlsPort}`,
    stderr: '',
    stdout: '',
    logs: [],
  };
  let partial = '';
  child.stderr.on('data', (chunk) => {
    const text = chunk.toString('utf8');
    gate.stderr += text;
    partial += text;
    let newline;
    while ((newline = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      if (line.trim() === '') continue;
      try {
        gate.logs.push(JSON.parse(line));
      } catch {
        gate.logs.push({ unparsed: line });
      }
    }
  });
  child.stdout.on('data', (chunk) => { gate.stdout += chunk.toString('utf8'); });

  gate.stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    if (!(await waitExit(child, 12000))) {
      child.kill('SIGKILL');
      await waitExit(child, 3000);
      throw new Error(`jobgate did not exit on SIGTERM; log:\n${gate.stderr}`);
    }
    return child.exitCode;
  };
  gate.alive = () => child.exitCode === null && child.signalCode === null;
  gate.readyz = () => h1Request(gate.base, { method: 'GET', path: '/readyz', agent: false })
    .then((res) => res.status, () => null);

  if (!ready) return gate;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!gate.alive()) {
      throw new Error(`jobgate exited (code ${child.exitCode}, signal ${child.signalCode}) ` +
        `before it was ready; log:\n${gate.stderr}`);
    }
    if ((await gate.readyz()) === 200) return gate;
    await sleep(25);
  }
  await gate.stop().catch(() => {});
  throw new Error(`jobgate did not answer GET /readyz with 200 within ${timeoutMs} ms; ` +
    `log:\n${gate.stderr}`);
}

/* ---------- JWT minting, independent of the gateway's own code ---------- */

const b64url = (data) => Buffer.from(data).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The claims of a good token; overrides replace (undefined deletes) members. */
function claims(overrides = {}) {
  const now = nowSeconds();
  const base = { iss: ISSUER, aud: AUDIENCE, sub: 'svc-signup', tenant: 'acme',
    scope: 'tier:standard', iat: now, exp: now + 600 };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete base[key];
    else base[key] = value;
  }
  return base;
}

/**
 * Signs input ("header.payload") for alg with key: a Buffer/string HMAC secret, or a
 * node KeyObject / PEM private key.
 */
function signInput(alg, key, input) {
  switch (alg) {
    case 'HS256': case 'HS384': case 'HS512':
      return crypto.createHmac(`sha${alg.slice(2)}`, key).update(input).digest();
    case 'RS256':
      return crypto.sign('sha256', Buffer.from(input), key);
    case 'ES256':
      return crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    case 'none':
      return Buffer.alloc(0);
    default:
      throw new Error(`cannot sign ${alg}`);
  }
}

/**
 * Mints a JWT. options: { kid, alg, key } where alg decides the signature and key is
 * the signing material; header replaces the whole JOSE header when given (so a test
 * can send alg "none", a wrong kid or no kid), extraHeader adds members.
 */
function mint(payload, { kid, alg, key, header, extraHeader } = {}) {
  const joseHeader = header || { alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }), ...extraHeader };
  const input = `${b64url(JSON.stringify(joseHeader))}.${b64url(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
  const signature = signInput(alg, key, input);
  return `${input}.${b64url(signature)}`;
}

/** A token signed correctly with one of the material's keys ("HS256", "RS256", ...). */
function tokenFor(material, alg, claimOverrides = {}) {
  const entry = material.keys[alg];
  const key = alg.startsWith('HS') ? entry.secret : entry.privateKey;
  return mint(claims(claimOverrides), { kid: entry.kid, alg, key });
}

/** Runs `jobgate token --config ...` with extra args and returns the token. */
function jobgateToken(configPath, args = []) {
  return execFileSync(jobgateBinary(), ['token', '--config', configPath, ...args],
    { encoding: 'utf8' }).trim();
}

/* ---------- HTTP clients ---------- */

function decodeBody(headers, raw) {
  const type = String(headers['content-type'] || '');
  let body = raw.toString('utf8');
  if (/^application\/(problem\+)?json\b/i.test(type) && raw.length > 0) {
    try {
      body = JSON.parse(body);
    } catch {
      /* left as text; the test will say what it expected */
    }
  }
  return body;
}

function toBuffer(body) {
  if (body === undefined || body === null) return null;
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/** Request headers for an enqueue: bearer token and JSON content type unless overridden. */
function jobHeaders(token, extra = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token !== undefined && token !== null) headers.authorization = `Bearer ${token}`;
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete headers[key.toLowerCase()];
    else headers[key.toLowerCase()] = value;
  }
  return headers;
}

/**
 * One request over HTTP/1.1 (http: or https: base). opts: { method, path, headers,
 * body, alpn ('http/1.1' by default for TLS), ca }. Resolves { status, headers,
 * body, raw, protocol, alpn }.
 */
function h1Request(base, { method = 'GET', path: reqPath = '/', headers = {}, body, ca, timeoutMs = 10000 } = {}) {
  const url = new URL(reqPath, base);
  const payload = toBuffer(body);
  const tls = url.protocol === 'https:';
  const options = { method, hostname: url.hostname, port: url.port, path: url.pathname + url.search,
    headers: { ...headers }, agent: false };
  if (payload) options.headers['content-length'] = payload.length;
  if (tls) Object.assign(options, { ca, ALPNProtocols: ['http/1.1'] });
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(options, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, raw, text: raw.toString('utf8'),
          body: decodeBody(res.headers, raw), protocol: `HTTP/${res.httpVersion}`,
          alpn: tls ? res.socket.alpnProtocol : undefined });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`HTTP/1.1 request timed out: ${method} ${url}`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Opens an HTTP/2 session: h2c prior knowledge for http:, TLS with ALPN h2 for https:. */
function h2Connect(base, { ca } = {}) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base, base.startsWith('https:') ? { ca, ALPNProtocols: ['h2'] } : {});
    session.once('error', reject);
    session.once('connect', () => {
      session.removeListener('error', reject);
      session.on('error', () => {});
      resolve(session);
    });
  });
}

/**
 * One request over HTTP/2. Uses opts.session when given, else a fresh session that is
 * closed afterwards. Resolves { status, headers, body, raw, alpn } or, when the server
 * resets the stream, { reset: code }.
 */
async function h2Request(base, { method = 'GET', path: reqPath = '/', headers = {}, body, ca, session,
  timeoutMs = 10000 } = {}) {
  const own = !session;
  if (own) session = await h2Connect(base, { ca });
  const alpn = session.alpnProtocol;
  try {
    return await new Promise((resolve, reject) => {
      const payload = toBuffer(body);
      const stream = session.request({ ':method': method, ':path': reqPath, ...headers },
        { endStream: !payload });
      let response = null;
      const chunks = [];
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`HTTP/2 request timed out: ${method} ${reqPath}`));
      }, timeoutMs);
      stream.on('response', (h) => { response = h; });
      stream.on('data', (c) => chunks.push(c));
      stream.on('error', () => {});
      stream.on('close', () => {
        clearTimeout(timer);
        if (!response) {
          resolve({ reset: stream.rstCode, status: null, alpn });
          return;
        }
        const raw = Buffer.concat(chunks);
        const { ':status': status, ...rest } = response;
        resolve({ status, headers: rest, raw, text: raw.toString('utf8'), body: decodeBody(rest, raw),
          alpn, reset: stream.rstCode || 0 });
      });
      if (payload) stream.end(payload);
    });
  } finally {
    if (own) session.close();
  }
}

/** A problem+json answer: status, stable type, content type and body status all agree. */
function assertProblem(res, status, kind) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json(;|$)/,
    `content-type of a ${status}`);
  assert.equal(typeof res.body, 'object', `problem body should be JSON: ${res.text}`);
  assert.equal(res.body.type, PROBLEM + kind);
  assert.equal(res.body.status, status);
  assert.equal(typeof res.body.title, 'string');
}

/**
 * Sends a request by protocol: 'h2c' (HTTP/2 prior knowledge), 'h2' (TLS, ALPN h2),
 * 'http1' (cleartext HTTP/1.1) or 'https1' (TLS, ALPN http/1.1).
 */
function send(env, protocol, opts) {
  const { gate, material } = env;
  switch (protocol) {
    case 'h2c': return h2Request(gate.base, opts);
    case 'h2': return h2Request(gate.tlsBase, { ca: material.cert, ...opts });
    case 'http1': return h1Request(gate.base, opts);
    case 'https1': return h1Request(gate.tlsBase, { ca: material.cert, ...opts });
    default: throw new Error(`unknown protocol ${protocol}`);
  }
}

/** POST a job to a queue: opts { protocol = 'h2c', token, body, headers, session }. */
function enqueue(env, queue, { protocol = 'h2c', token, body, headers, ...rest } = {}) {
  return send(env, protocol, { method: 'POST', path: `/v1/queues/${queue}/jobs`,
    headers: headers || jobHeaders(token), body, ...rest });
}

/**
 * One redis-server, key material, config and jobgate for a test file. Call teardown()
 * in after(); it stops whatever was started, even after a partial setup.
 */
async function setupEnvironment({ overrides = {}, ready = true } = {}) {
  const env = { material: makeKeyMaterial() };
  env.teardown = async () => {
    if (env.client) env.client.disconnect();
    if (env.gate) await env.gate.stop().catch(() => {});
    if (env.redis) await env.redis.cleanup().catch(() => {});
    env.material.cleanup();
  };
  try {
    env.redis = await startRedis();
    env.config = await writeConfig(env.material, env.redis.port, overrides);
    env.gate = await startJobgate(env.config, { ready });
    env.client = env.redis.client();
    env.snapshot = () => snapshotRedis(env.client);
    env.token = (alg = 'HS256', claimOverrides = {}) => tokenFor(env.material, alg, claimOverrides);
  } catch (error) {
    await env.teardown();
    throw error;
  }
  return env;
}

/**
 * Runs send() and checks a rejection: status, problem type, problem+json, and that
 * Redis holds exactly what it held before. Returns the response.
 */
async function assertRejected(env, status, kind, sendFn) {
  const before = await env.snapshot();
  const res = await sendFn();
  assertProblem(res, status, kind);
  assert.deepEqual(await env.snapshot(), before, 'Redis changed after a rejected request');
  return res;
}

/** Reads the job payloads of a Resque queue. */
async function queueContents(client, queue, namespace = 'resque') {
  return client.lrange(`${namespace}:queue:${queue}`, 0, -1);
}

/** A worker kit's verifier holding the environment's worker keys. */
async function verifierFor(material) {
  return kit.Verifier.create(await kit.loadKeys(material.envelopeDir));
}

/**
 * Opens a stored payload as a worker would, after checking that it is a Resque job
 * whose one argument is the envelope. Returns { class, args, envelope, job }: the
 * payload's class, the producer's arguments with secrets opened, the envelope as
 * stored and what the kit returned.
 */
async function openPayload(material, payload, queue) {
  const parsed = JSON.parse(payload);
  assert.deepEqual(Object.keys(parsed), ['class', 'args'], 'a Resque payload: class, then args');
  assert.equal(parsed.args.length, 1, 'args hold the envelope alone');
  const verifier = await verifierFor(material);
  const job = verifier.open(parsed.args, { className: parsed.class, queue, payloadClass: parsed.class });
  return { class: parsed.class, args: job.args, envelope: parsed.args[0], job };
}

/**
 * Checks that a queue holds exactly the given jobs, each written as the Resque payload
 * it stands for ('{"class":"C","args":[...]}'), oldest first: every stored payload
 * verifies, names the queue and class, carries the producer's arguments, and holds its
 * envelope in RFC 8785 canonical form, byte for byte.
 */
async function assertQueueHolds(env, queue, expected, namespace = 'resque') {
  const stored = await queueContents(env.client, queue, namespace);
  assert.equal(stored.length, expected.length, `${queue} holds ${stored.length} jobs`);
  for (const [i, payload] of stored.entries()) {
    const want = JSON.parse(expected[i]);
    const opened = await openPayload(env.material, payload, queue);
    assert.equal(opened.class, want.class);
    assert.equal(opened.envelope.queue, queue);
    assert.match(opened.envelope.id, UUID_RE);
    assert.deepEqual(opened.args, want.args);
    assert.equal(payload,
      `{"class":${JSON.stringify(want.class)},"args":[${kit.canonicalize(opened.envelope)}]}`,
      'the envelope is stored in canonical form');
  }
}

/** Every job of a queue, opened (see openPayload), oldest first. */
async function openQueue(env, queue, namespace = 'resque') {
  const payloads = await queueContents(env.client, queue, namespace);
  return Promise.all(payloads.map((payload) => openPayload(env.material, payload, queue)));
}

/** Every job of a queue as JSON text of its class and opened arguments. */
async function storedJobs(env, queue) {
  return (await openQueue(env, queue)).map((job) => JSON.stringify({ class: job.class, args: job.args }));
}

module.exports = {
  AUDIENCE, ISSUER, PROBLEM, REPO, UUID_RE,
  assertProblem, assertQueueHolds, assertRejected, b64url, enqueue, send, setupEnvironment, claims, freePort, h1Request, h2Connect, h2Request, jobHeaders,
  jobgateBinary, jobgateToken, makeKeyMaterial, merge, mint, nowSeconds, openPayload, openQueue,
  queueContents, storedJobs, verifierFor,
  rawRedisCommand, signInput, sleep, snapshotRedis, startJobgate, startRedis, tokenFor,
  waitExit, writeConfig,
};
