'use strict';
/*
 * Helpers for the transport and budget tests (transport.test.js, batch.test.js): raw
 * sockets watched until the server closes them, HTTP/2 sessions from another local
 * address, a minimal HTTP/2 frame reader, the rapid-reset client (lib/rapid_reset.py,
 * python3-h2) and request header sizes.
 */
const { execFile } = require('node:child_process');
const http2 = require('node:http2');
const net = require('node:net');
const path = require('node:path');

/* Debian's python3 has the h2 package; the python3 first on PATH may not. */
const PYTHON = '/usr/bin/python3';
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME = { DATA: 0x0, HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4, PING: 0x6, GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8 };

/** One HTTP/2 frame: type, flags, stream id and payload. */
function frame(type, flags, streamId, payload = Buffer.alloc(0)) {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** Splits buffer into whole frames; returns { frames, rest }. */
function readFrames(buffer) {
  const frames = [];
  let offset = 0;
  while (buffer.length - offset >= 9) {
    const length = buffer.readUIntBE(offset, 3);
    if (buffer.length - offset < 9 + length) break;
    frames.push({ type: buffer[offset + 3], flags: buffer[offset + 4],
      streamId: buffer.readUInt32BE(offset + 5) & 0x7fffffff,
      payload: buffer.subarray(offset + 9, offset + 9 + length) });
    offset += 9 + length;
  }
  return { frames, rest: buffer.subarray(offset) };
}

/** Opens a TCP connection; resolves the socket once connected. */
function connectRaw({ port, host = '127.0.0.1', localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, localAddress });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
  });
}

/**
 * Watches socket from now until the peer closes it or limitMs passes (then destroys it).
 * onData(chunk, socket) sees what arrives. Resolves { closed, afterMs, data, error }:
 * whether the server closed it, after how long, everything received and any socket error.
 */
function watchClose(socket, limitMs, onData = () => {}) {
  const started = process.hrtime.bigint();
  const chunks = [];
  let error = null;
  return new Promise((resolve) => {
    const finish = (closed) => {
      clearTimeout(timer);
      resolve({ closed, afterMs: Number(process.hrtime.bigint() - started) / 1e6,
        data: Buffer.concat(chunks), error });
    };
    const timer = setTimeout(() => {
      socket.removeAllListeners('close');
      socket.destroy();
      finish(false);
    }, limitMs);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      onData(chunk, socket);
    });
    socket.on('error', (e) => { error = e; });
    socket.once('close', () => finish(true));
  });
}

/** An HTTP/2 (h2c prior knowledge) session from localAddress, e.g. '127.0.0.2'. */
function h2ConnectFrom(base, localAddress) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base, { localAddress });
    session.once('error', reject);
    session.once('connect', () => {
      session.removeListener('error', reject);
      session.on('error', () => {});
      resolve(session);
    });
  });
}

/**
 * Runs lib/rapid_reset.py against the gateway's cleartext listener; resolves its JSON
 * report. options: { path, token, count, template, thenRequest, lingerMs, timeoutMs }.
 */
function rapidReset(gate, { path: target, token, count, template, thenRequest = false, lingerMs = 300,
  timeoutMs = 10000 }) {
  const args = [path.join(__dirname, 'rapid_reset.py'), '127.0.0.1', String(gate.httpPort), target, token,
    String(count), template, '--linger-ms', String(lingerMs), '--timeout-ms', String(timeoutMs)];
  if (thenRequest) args.push('--then-request');
  return runPython('rapid_reset.py', args, timeoutMs + 10000);
}

/**
 * Writes count jobs on one connection in a single write through lib/h2_burst.py, with
 * every resetEvery-th stream and the first resetFirst streams reset at once, so that
 * jobgate reads each reset together with its job. Resolves h2_burst.py's report: for
 * each stream, { n, reset, status, body }.
 */
function h2Burst(gate, { path: target, token, count, template, resetEvery = 0, resetFirst = 0 }) {
  const args = [path.join(__dirname, 'h2_burst.py'), '127.0.0.1', String(gate.httpPort), target,
    token, String(count), String(resetEvery), template, String(resetFirst)];
  return runPython('h2_burst.py', args, 20000);
}

/** Runs one of the python3-h2 clients and resolves the JSON it prints. */
function runPython(name, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${name} failed: ${error.message}\n${stderr}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout));
        } catch {
          reject(new Error(`${name} printed no JSON: ${stdout}\n${stderr}`));
        }
      });
  });
}

/** What max_header_bytes counts: the sum of every header's name and value lengths. */
function headerBytes(headers) {
  return Object.entries(headers).reduce((sum, [name, value]) =>
    sum + Buffer.byteLength(name) + Buffer.byteLength(String(value)), 0);
}

module.exports = { FRAME, H2_PREFACE, PYTHON, connectRaw, frame, h2Burst, h2ConnectFrom, headerBytes, rapidReset,
  readFrames, watchClose };
