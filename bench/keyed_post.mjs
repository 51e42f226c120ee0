// POSTs one job body many times over HTTP/2, with or without Idempotency-Key, for
// bench/run.sh (h2load sends the same headers on every request, so it cannot give each
// request a key of its own).
//
//   node bench/keyed_post.mjs URL TOKEN BODY_FILE KEYS REQUESTS CLIENTS STREAMS
//
// KEYS is "none" (no header), "unique" (a new key per request) or "same" (one key for
// all, so every request after the first is a replay). Prints the rate in requests per
// second; exits 1 unless every answer was 202.
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

const [url, token, bodyFile, keys, requestsArg, clientsArg, streamsArg] = process.argv.slice(2);
const body = readFileSync(bodyFile);
const requests = Number(requestsArg);
const clients = Number(clientsArg);
const streams = Number(streamsArg);
const { origin, pathname } = new URL(url);
const sharedKey = randomUUID();
const statuses = new Map();
let started = 0;

function headers() {
  const result = {
    ':method': 'POST',
    ':path': pathname,
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
  };
  if (keys === 'unique') result['idempotency-key'] = randomUUID();
  if (keys === 'same') result['idempotency-key'] = sharedKey;
  return result;
}

// Keeps one request in flight on the session until the run has started them all.
function stream(session) {
  return new Promise((resolve, reject) => {
    const next = () => {
      if (started >= requests) return resolve();
      started++;
      const request = session.request(headers());
      request.on('response', (answer) => {
        const status = answer[':status'];
        statuses.set(status, (statuses.get(status) || 0) + 1);
      });
      request.on('error', reject);
      request.resume();
      request.on('end', next);
      request.end(body);
    };
    next();
  });
}

async function client() {
  const session = http2.connect(origin);
  session.on('error', () => {});
  const lanes = [];
  for (let i = 0; i < streams; i++) lanes.push(stream(session));
  await Promise.all(lanes);
  session.close();
}

const begin = process.hrtime.bigint();
const all = [];
for (let i = 0; i < clients; i++) all.push(client());
await Promise.all(all);
const seconds = Number(process.hrtime.bigint() - begin) / 1e9;

const accepted = statuses.get(202) || 0;
if (accepted !== requests) {
  console.error(`not every request was accepted: ${JSON.stringify([...statuses])}`);
  process.exit(1);
}
console.log((requests / seconds).toFixed(0));
