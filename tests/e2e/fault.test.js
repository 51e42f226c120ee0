'use strict';
/*
 * Kills Redis with SIGKILL in the middle of a stream of enqueues, restarts it from its
 * append-only file, and checks that every job answered 202 is in the queue: a 202 is
 * only ever sent for a write Redis confirmed. Each job carries a unique number in its
 * args so that answers and queue entries can be matched.
 */
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const Redis = require('ioredis');

const {
  freePort, h2Connect, h2Request, jobHeaders, makeKeyMaterial, rawRedisCommand, sleep,
  startJobgate, tokenFor, waitExit, writeConfig,
} = require('./lib/harness');

const JOBS = 3000;
const SESSIONS = 4;
const STREAMS_PER_SESSION = 8;
const KILL_AFTER = 600;
const DOWN_MS = 400;

/* A redis-server that fsyncs every write to its append-only file before answering. */
function durableRedis(port, dir) {
  const redis = {
    process: null,
    async start() {
      this.process = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir],
      { stdio: 'ignore' });
      for (let i = 0; i < 250; i++) {
        if ((await rawRedisCommand(port, 'PING')) === '+PONG') return;
        await sleep(20);
      }
      throw new Error(`redis-server on port ${port} did not start`);
    },
    async kill() {
      this.process.kill('SIGKILL');
      await waitExit(this.process, 3000);
    },
  };
  return redis;
}

let material;
let redis;
let gate;
let redisDir;
let redisPort;

before(async () => {
  material = makeKeyMaterial();
  redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobgate-fault-'));
  redisPort = await freePort();
  redis = durableRedis(redisPort, redisDir);
  await redis.start();
  const config = await writeConfig(material, redisPort, {
    redis: { command_timeout_ms: 300, reconnect_min_ms: 20, reconnect_max_ms: 100 },
  });
  gate = await startJobgate(config);
});

after(async () => {
  if (gate) await gate.stop().catch(() => {});
  if (redis && redis.process) await redis.kill().catch(() => {});
  if (redisDir) fs.rmSync(redisDir, { recursive: true, force: true });
  if (material) material.cleanup();
});

test('no job answered 202 is lost when Redis is killed under load', async () => {
  const token = tokenFor(material, 'HS256');
  const sessions = await Promise.all(
    Array.from({ length: SESSIONS }, () => h2Connect(gate.base)));
  const answers = new Map();
  let next = 0;
  let killed = null;

  async function producer(session) {
    while (next < JOBS) {
      const number = next++;
      if (number === KILL_AFTER) {
        killed = (async () => {
          await redis.kill();
          await sleep(DOWN_MS);
          await redis.start();
        })();
      }
      const res = await h2Request(gate.base, {
        session, method: 'POST', path: '/v1/queues/mailers/jobs', headers: jobHeaders(token),
        body: { class: 'SendWelcomeEmail', args: [{ number }] },
      });
      answers.set(number, res.status);
      if (res.status === 503) {
        /* Back off as a well-behaved producer would, until Redis is back. */
        await killed;
        await sleep(50);
      }
    }
  }

  await Promise.all(sessions.flatMap((session) =>
    Array.from({ length: STREAMS_PER_SESSION }, () => producer(session))));
  await killed;
  for (const session of sessions) session.close();

  const statuses = [...answers.values()];
  const accepted = [...answers].filter(([, status]) => status === 202).map(([n]) => n);
  assert.deepEqual([...new Set(statuses)].filter((s) => s !== 202 && s !== 503), [],
    'every answer is 202 or 503');
  assert.ok(statuses.includes(503), 'the kill was noticed: some jobs were refused with 503');
  assert.ok(answers.get(JOBS - 1) === 202 || accepted.some((n) => n > KILL_AFTER + 200),
    'jobgate reconnected and accepted jobs after the restart');

  const client = new Redis({ host: '127.0.0.1', port: redisPort });
  const entries = await client.lrange('resque:queue:mailers', 0, -1);
  client.disconnect();
  const stored = new Set(entries.map((payload) => JSON.parse(payload).args[0].args[0].number));
  const lost = accepted.filter((n) => !stored.has(n));
  assert.deepEqual(lost, [], `${lost.length} of ${accepted.length} accepted jobs are missing`);
});
