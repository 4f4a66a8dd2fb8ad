// pg-cluster-worker against a real server (test/run starts it): both modes,
// per-event results, patches, failures, reconnects and the drain.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createWorker } from '../index.js';

const db = new pg.Client();
await db.connect();
after(() => db.end());
const quiet = { info() {}, warn() {} };

const sql = async (text, params) => (await db.query(text, params)).rows;
async function until(fn, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
async function handlerNamed(name, options = '') {
  await sql(`SELECT cluster.create_pump('${name}')`);
  await sql(`SELECT cluster.create_handler('${name}', '${name}'${options})`);
}
async function publish(stream, n, extra = () => ({})) {
  await sql(`SELECT count(cluster.publish($1, jsonb_build_object('n', i) || $2::jsonb, key => 'k' || (i % 5)))
               FROM generate_series(1, $3::int) i`, [stream, JSON.stringify(extra()), n]);
}
const token = async (handler, args = '') =>
  (await sql(`SELECT cluster.issue_worker_token('${handler}'${args}) AS t`))[0].t;
const passed = (handler) => until(async () =>
  (await sql('SELECT lag_events = 0 AND in_flight = 0 AS done FROM cluster.handlers WHERE name = $1', [handler]))[0].done,
`handler ${handler} to pass every event`);

test('dialing in with a token: every event handled, in per-key order, with its fields', async (t) => {
  await handlerNamed('dial', ', batch_size => 7');
  const seen = [];
  const w = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: await token('dial'),
    logger: quiet,
    handle: (events, context) => {
      assert.equal(context.handler, 'dial');
      seen.push(...events);
    },
  });
  t.after(() => w.stop());
  await w.start();
  await publish('dial', 60);
  await passed('dial');
  assert.equal(new Set(seen.map((e) => e.id)).size, 60);
  const e = seen[0];
  assert.equal(typeof e.id, 'string');
  assert.equal(e.stream, 'dial');
  assert.equal(e.attempt, 1);
  assert.match(e.createdAt, /^\d{4}-\d\d-\d\dT/);
  const byKey = {};
  for (const ev of seen) (byKey[ev.key] ??= []).push(BigInt(ev.id));
  for (const ids of Object.values(byKey)) assert.deepEqual(ids, [...ids].sort((a, b) => (a < b ? -1 : 1)));
  const [row] = await sql("SELECT dialed_in, connected FROM cluster.workers WHERE handler = 'dial'");
  assert.deepEqual(row, { dialed_in: true, connected: true });
});

test('per-event failures become retries and dead letters; the patch reaches the state', async (t) => {
  await handlerNamed('results', ', batch_size => 10, max_attempts => 2');
  const w = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: await token('results'),
    logger: quiet,
    handle: (events) => ({
      failed: events.filter((e) => e.payload.n % 10 === 0).map((e) => ({ eventId: e.id, error: `bad ${e.payload.n}` })),
      patch: events.map((e) => ({ op: 'set', path: ['seen', e.id], value: e.attempt })),
    }),
  });
  t.after(() => w.stop());
  await w.start();
  await publish('results', 30);
  await until(async () => (await sql("SELECT count(*)::int AS n FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'results'"))[0].n === 3,
    'three dead letters');
  const letters = await sql("SELECT d.last_error AS error FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'results' ORDER BY d.event_id");
  assert.deepEqual(letters.map((l) => l.error), ['bad 10', 'bad 20', 'bad 30']);
  await passed('results');
  const [{ seen }] = await sql("SELECT cluster.handler_state('results') -> 'seen' AS seen");
  assert.equal(Object.keys(seen).length, 30);
  assert.ok(Object.values(seen).some((attempt) => attempt === 2), 'the failed ones were tried again');
});

test('a throwing handler fails the delivery; the events come again', async (t) => {
  await handlerNamed('throws');
  let calls = 0;
  const handled = new Set();
  const w = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: await token('throws'),
    logger: quiet,
    handle: (events) => {
      calls++;
      if (events.some((e) => e.attempt === 1)) throw new Error('not yet');
      events.forEach((e) => handled.add(e.id));
    },
  });
  t.after(() => w.stop());
  await w.start();
  await publish('throws', 5);
  await until(() => handled.size === 5, 'the events on their second attempt');
  assert.ok(calls >= 2);
});

test('being dialled: registered over pg, served, unregistered at stop', async (t) => {
  await handlerNamed('dialled');
  const seen = [];
  const w = createWorker({
    listen: { host: '127.0.0.1', port: 0, secret: 's3cret' },
    register: { pg: {}, handler: 'dialled', heartbeatMs: 500 },
    logger: quiet,
    handle: (events) => { seen.push(...events); },
  });
  t.after(() => w.stop()); // a no-op once the test has stopped it
  await w.start();
  assert.match(w.workerId, /^[0-9a-f-]{36}$/);
  await publish('dialled', 20);
  await passed('dialled');
  assert.equal(seen.length, 20);
  const [row] = await sql("SELECT dialed_in, connected, address FROM cluster.workers WHERE handler = 'dialled'");
  assert.deepEqual(row, { dialed_in: false, connected: true, address: `ws://127.0.0.1:${w.port}/` });
  await w.stop();
  assert.equal((await sql("SELECT count(*)::int AS n FROM cluster.worker"))[0].n, 0);
});

test('a wrong token is refused and handles nothing; after a takeover the worker is served again', async (t) => {
  await handlerNamed('takeover');
  const warnings = [];
  const wrong = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: 'cwt_wrong',
    logger: { info() {}, warn: (m) => warnings.push(m) },
    handle: () => { throw new Error('never'); },
  });
  t.after(() => wrong.stop());
  await wrong.start();
  await until(() => warnings.some((m) => /HTTP 401/.test(m)), 'a 401');

  const seen = new Set();
  let connections = 0;
  const w = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: await token('takeover'),
    logger: quiet,
    handle: (events) => { events.forEach((e) => seen.add(e.id)); },
  });
  w.on('connected', () => { connections++; });
  t.after(() => w.stop());
  await w.start();
  await until(() => connections === 1, 'a connection');
  const [{ pid }] = await sql("SELECT pid FROM cluster.engines WHERE role = 'leader'");
  await sql('SELECT pg_terminate_backend($1)', [pid]);
  await until(() => connections === 2, 'a connection to the new leader');
  await publish('takeover', 10);
  await passed('takeover');
  assert.equal(seen.size, 10);
});

test('stop() drains: the delivery in flight is answered, later ones fail until it stops', async (t) => {
  await handlerNamed('drain', ', batch_size => 1');
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const done = [];
  let running = false;
  const w = createWorker({
    connect: process.env.CLUSTER_LISTEN,
    token: await token('drain', ', capacity => 1'),
    capacity: 1,
    logger: quiet,
    handle: async (events) => { running = true; await gate; done.push(...events.map((e) => e.id)); },
  });
  // if the test fails first: let the delivery finish, or stop() waits for it
  t.after(() => { release(); return w.stop(); });
  await w.start();
  await publish('drain', 3);
  // the handler runs a delivery (in_flight alone may be ahead of the worker)
  await until(() => running, 'a delivery running in the handler');
  const stopped = w.stop();
  release();
  await stopped;
  assert.equal(done.length, 1, 'the one in flight finished');
  const [{ processed }] = await sql("SELECT (state #>> '{counters,processed}')::int AS processed FROM cluster.handler WHERE name = 'drain'");
  await until(async () => (await sql("SELECT (state #>> '{counters,processed}')::int AS p FROM cluster.handler WHERE name = 'drain'"))[0].p === 1,
    'its ack committed');
  assert.ok(processed <= 1);
});
