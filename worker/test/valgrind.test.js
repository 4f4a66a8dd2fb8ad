'use strict';
// Two short sessions with cluster-worker under valgrind's memcheck.  One:
// a secret read from a file, every kind of message, an --exec delivery of
// each outcome (a failing batch run again per event among them), a refused
// and a closed connection, a re-registration, and a SIGTERM with a delivery
// in flight.  Two: --per-event, then the registration gone for good (exit
// 3) with a delivery in flight.  Three: --connect, refused, served,
// closed and dialed again, then SIGTERM.  Any memory error or definite/indirect leak
// fails the test.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const {
  Worker, Leader, event, delivery, hello, sql, sleep, until,
} = require('./harness');

const SCRIPT = path.join(__dirname, 'handler.sh');

// valgrind's options, its log going to dir/valgrind.log.
function memcheck(dir) {
  return ['valgrind', '--leak-check=full', '--show-leak-kinds=definite,indirect',
    '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=99',
    `--log-file=${path.join(dir, 'valgrind.log')}`];
}

test('a session under valgrind --leak-check=full is clean', { timeout: 120000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-vg-'));
  const log = path.join(dir, 'valgrind.log');
  const wrapper = memcheck(dir);
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, 'vg\n', { mode: 0o600 });
  const w = await Worker.start(['--handler', 'vg-h', '--secret-file', secretFile, '--capacity', '2',
    '--heartbeat', '1', '--exec', `exec sh ${SCRIPT}`], { wrapper, timeout: 60000 });

  await assert.rejects(Leader.connect(w.url()), (err) => err.status === 401);

  let leader = await Leader.connect(w.url(), { token: 'vg' });
  leader.send(hello('vg-h'));
  leader.send(delivery('echo', [event({ do: 'echo', x: 0.25 }), event({ do: 'echo' })]));
  leader.send(delivery('err', [event({ do: 'stderr' })]));
  leader.send(delivery('long', [event({ do: 'long-stderr' })]));
  leader.send(delivery('ok', [event({ do: 'nothing' })]));
  leader.send(delivery('mixed', [event({ name: 'g' }), event({ name: 'b', bad: true })]));
  leader.send(delivery('empty', []));
  leader.send({ type: 'ping' });
  leader.send({ type: 'mystery' });
  leader.sendRaw('{"type":"events","deliveryId":"big","events":[{"n":123456789012345678901234567890}]}');
  const text = JSON.stringify(delivery('frag', [event({ do: 'nothing' })]));
  leader.sendRaw(text.slice(0, 7), { fin: false });
  leader.sendRaw(text.slice(7), { fin: true });
  assert.equal((await leader.answer('echo', 20000)).type, 'ack');
  assert.equal((await leader.answer('err', 20000)).type, 'fail');
  assert.equal((await leader.answer('long', 20000)).type, 'fail');
  assert.equal((await leader.answer('ok', 20000)).type, 'ack');
  assert.equal((await leader.answer('mixed', 20000)).failed.length, 1);
  assert.equal((await leader.answer('empty', 20000)).type, 'ack');
  assert.equal((await leader.answer('big', 20000)).type, 'fail');
  assert.equal((await leader.answer('frag', 20000)).type, 'ack');
  await leader.expect((m) => m.type === 'pong', 'pong', 20000);

  // a lapsed registration, then a connection closed for bad JSON
  sql(`DELETE FROM cluster.workers WHERE id = '${w.workerId}'`);
  await w.waitLog(/registering again/, 20000);
  leader.sendRaw('not json');
  assert.equal((await leader.closed).code, 1007);

  // SIGTERM with two deliveries running and one queued for a free slot
  leader = await Leader.connect(w.url(), { token: 'vg' });
  for (const id of ['slow1', 'slow2', 'slow3']) leader.send(delivery(id, [event({ do: 'sleep' })]));
  await sleep(500);
  w.signal('SIGTERM');
  await w.waitLog(/shutting down/, 20000);
  leader.send(delivery('late', [event({})]));
  assert.equal((await leader.answer('late', 20000)).type, 'fail');
  for (const id of ['slow1', 'slow2', 'slow3']) {
    assert.equal((await leader.answer(id, 20000)).type, 'ack');
  }
  assert.equal((await leader.closed).code, 1001);

  const exit = await w.exited;
  const report = fs.readFileSync(log, 'utf8');
  assert.match(report, /ERROR SUMMARY: 0 errors/, report);
  assert.deepEqual(exit, { code: 0, signal: null }, report);
  fs.rmSync(dir, { recursive: true });
});

test('--per-event, then the registration gone for good, under valgrind', { timeout: 120000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-vg-'));
  const log = path.join(dir, 'valgrind.log');
  const w = await Worker.start(['--handler', 'vg-gone-h', '--heartbeat', '1', '--per-event',
    '--exec', `sleep 0.5; exec sh ${SCRIPT}`], { wrapper: memcheck(dir), timeout: 60000 });
  const leader = await Leader.connect(w.url());
  leader.send(delivery('per', [event({ name: 'g' }), event({ name: 'b', bad: true })]));
  assert.equal((await leader.answer('per', 20000)).failed.length, 1);
  leader.send(delivery('anon', [{ payload: {} }]));
  assert.equal((await leader.answer('anon', 20000)).type, 'fail');

  leader.send(delivery('inflight', [event({ name: 'g' }), event({ name: 'g2' })]));
  sql(`INSERT INTO cluster.failures VALUES ('vg-gone-h', 'register', '42704', 'handler "vg-gone-h" does not exist')`);
  sql(`DELETE FROM cluster.workers WHERE id = '${w.workerId}'`);
  await w.waitLog(/no longer exists/, 20000);
  assert.deepEqual(await leader.answer('inflight', 20000), { type: 'ack', deliveryId: 'inflight' });
  assert.equal((await leader.closed).code, 1001);

  const exit = await w.exited;
  const report = fs.readFileSync(log, 'utf8');
  assert.match(report, /ERROR SUMMARY: 0 errors/, report);
  assert.deepEqual(exit, { code: 3, signal: null }, report);
  fs.rmSync(dir, { recursive: true });
});

test('--connect under valgrind: a refusal, a delivery, a close and a redial, SIGTERM', { timeout: 120000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-vg-'));
  const log = path.join(dir, 'valgrind.log');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, 'cwt_vg\n', { mode: 0o600 });
  let accept = false;
  const server = new WebSocket.Server({ port: 0, host: '127.0.0.1', verifyClient: () => accept });
  await new Promise((resolve) => server.once('listening', resolve));
  const leaders = [];
  server.on('connection', (ws) => leaders.push(new Leader(ws)));
  const w = await Worker.start(['--connect', `ws://127.0.0.1:${server.address().port}/`,
    '--token-file', tokenFile, '--exec', `exec sh ${SCRIPT}`], { wrapper: memcheck(dir), timeout: 60000 });
  await w.waitLog(/unauthorized/, 20000);
  accept = true;
  const first = await until(() => leaders[0], 'a connection', 20000);
  first.send(hello('vg-connect'));
  first.send(delivery('c1', [event({ do: 'echo' })]));
  assert.equal((await first.answer('c1', 20000)).type, 'ack');
  first.ws.close(1001, 'leader going away');
  const second = await until(() => leaders[1], 'a redial', 20000);
  second.send(delivery('c2', [event({ do: 'nothing' })]));
  assert.equal((await second.answer('c2', 20000)).type, 'ack');
  w.signal('SIGTERM');
  assert.equal((await second.closed).code, 1001);
  const exit = await w.exited;
  server.close();
  const report = fs.readFileSync(log, 'utf8');
  assert.match(report, /ERROR SUMMARY: 0 errors/, report);
  assert.deepEqual(exit, { code: 0, signal: null }, report);
  fs.rmSync(dir, { recursive: true });
});
