// A node-resque worker for the queues of config/example.json, next to `make run`:
//
//   cd workers/node-resque/example && npm install && node worker.js
//
// It checks every job through the jobgate kit before its body runs, and prints what the
// body got. A secret is printed only as its length. Keys come from run/keys (the
// signer's public key and the workers' sealing key that `make run` made); set
// JOBGATE_KEYS, REDIS_HOST and REDIS_PORT to point elsewhere. Ctrl-C stops it.
const path = require('node:path');
const { Worker } = require('node-resque');
const { Verifier, loadKeys } = require('jobgate-worker');

const keys = process.env.JOBGATE_KEYS || path.join(__dirname, '..', '..', '..', 'run', 'keys');
const connection = { host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379) };

function show(job, args) {
  console.log(`${job.class} ${job.id} from ${job.tenant}/${job.sub}: ${JSON.stringify(args)}`);
}

async function main() {
  const verifier = await Verifier.create(await loadKeys(keys));
  const jobs = {
    SendWelcomeEmail: verifier.job('SendWelcomeEmail', async function (user) {
      show(this.jobgate, user);
    }),
    SendPasswordReset: verifier.job('SendPasswordReset', async function (reset) {
      show(this.jobgate, { ...reset, reset_token: `(opened, ${reset.reset_token.length} characters)` });
    }),
    BuildReport: verifier.job('BuildReport', async function (...args) {
      show(this.jobgate, args);
    }),
  };
  const worker = new Worker({ connection, queues: ['mailers', 'reports'], timeout: 200 }, jobs);
  worker.on('failure', (queue, job, failure) => console.log(`refused on ${queue}: ${failure.message}`));
  worker.on('error', (error) => console.error(`worker error: ${error.message}`));
  await worker.connect();
  await worker.start();
  console.log(`working mailers and reports on ${connection.host}:${connection.port}, keys from ${keys}`);
  process.once('SIGINT', async () => {
    await worker.end();
    process.exit(0);
  });
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
