// bench/realistic's Node worker, the same as realistic.py: dials in with
// CLUSTER_WORKER_TOKEN to the leader at argv[2] as worker argv[3]; every
// tenth event takes 50 ms, an event whose id is 7 modulo 20 fails its
// first attempt, each answer patches the state.
import { createWorker } from '../../clients/node/index.js';

const [url, name] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const worker = createWorker({
  connect: url,
  token: process.env.CLUSTER_WORKER_TOKEN,
  capacity: 4,
  handleSignals: true,
  async handle(events, { deliveryId }) {
    const failed = [];
    for (const e of events) {
      const n = Number(e.id);
      if (n % 10 === 0) await sleep(50);
      if (n % 20 === 7 && e.attempt === 1) failed.push({ eventId: e.id, error: 'fails once' });
    }
    return { failed, patch: [{ op: 'set', path: ['seen', name], value: deliveryId }] };
  },
});
worker.on('stopped', () => process.exit(0));
await worker.start();
