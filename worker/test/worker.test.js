'use strict';
// cluster-worker, end to end: this file plays the leader.  Run by test/run,
// which starts the scratch PostgreSQL holding the stub registry.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const WebSocket = require('ws');
const {
  Worker, Leader, event, delivery, hello, sql, sqlRows, sleep, until,
} = require('./harness');

const WORKER = process.env.CW_WORKER || `${__dirname}/../cluster-worker`;
const SCRIPT = path.join(__dirname, 'handler.sh');

function calls(workerId) {
  return sqlRows(`SELECT fn, worker_id, handler, address, secret, capacity
                    FROM cluster.calls WHERE worker_id = '${workerId}' ORDER BY n`);
}

test('--help documents every option; bad usage exits 2', () => {
  const help = execFileSync(WORKER, ['--help'], { encoding: 'utf8' });
  for (const option of ['--handler', '--listen', '--advertise', '--secret', '--secret-file', '--capacity',
    '--db', '--heartbeat', '--exec', '--per-event', '--print', '--tls-cert', '--tls-key', '--help']) {
    assert.match(help, new RegExp(`\\s${option}\\b`), option);
  }
  assert.equal(spawnSync(WORKER, []).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', ':0']).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', 'x', '--print']).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', ':0', '--print',
    '--exec', 'true']).status, 2);
  const perEventPrint = spawnSync(WORKER, ['--handler', 'h', '--listen', ':0', '--print', '--per-event'],
    { encoding: 'utf8' });
  assert.equal(perEventPrint.status, 2);
  assert.match(perEventPrint.stderr, /--per-event goes with --exec/);
  assert.match(help, /Exit status:[^]*\n {2}3 {2}the registration is gone for good/);
  assert.match(help, /handler no longer exists/);
  assert.match(help, /cluster extension is not installed/);
  assert.match(help, /permission was denied/);
  assert.match(help, /other local users\s+can read it \(ps, \/proc\)/);
  assert.match(help, /CLUSTER_WORKER_SECRET/);
  assert.match(help, /PGPASSFILE/);
});

test('--print: hello, deliveries, ping, unknown type; registers and unregisters', async () => {
  const w = await Worker.start(['--handler', 'print-h', '--print']);
  assert.match(w.address, /^ws:\/\/127\.0\.0\.1:\d+\/$/);
  const leader = await Leader.connect(w.url());
  const events1 = [event({ n: 1, price: 0.1, tags: ['a', 'é/ü'] }), event({ nested: { x: [1, 2.5, null, true] } })];
  const events2 = [event('just a string', null)];
  leader.send(hello('print-h'));
  leader.send(delivery('d1', events1));
  leader.send(delivery('d2', events2));
  leader.send({ type: 'ping' });
  leader.send({ type: 'mystery', x: 1 });
  leader.send({ type: 'ping' });
  assert.deepEqual(await leader.answer('d1'), { type: 'ack', deliveryId: 'd1' });
  assert.deepEqual(await leader.answer('d2'), { type: 'ack', deliveryId: 'd2' });
  await leader.expect((m) => m.type === 'pong', 'pong');
  await leader.expect((m) => m.type === 'pong', 'second pong');
  await until(() => w.stdoutLines().length >= 3, 'the printed events');
  assert.deepEqual(w.stdoutLines(), [...events1, ...events2].map((e) => JSON.stringify(e)));
  await w.waitLog(/hello from leader test-leader\/1 at 127\.0\.0\.1: fence 7, handler "print-h", protocol 1/);
  await w.waitLog(/unknown type "mystery".*ignored/);

  await leader.close();
  assert.deepEqual(await w.stop(), { code: 0, signal: null });
  assert.deepEqual(calls(w.workerId), [
    ['register', w.workerId, 'print-h', w.address, '', '4'],
    ['unregister', w.workerId, '', '', '', ''],
  ]);
});

test('--secret: 401 without or with a wrong bearer token', async () => {
  const w = await Worker.start(['--handler', 'secret-h', '--secret', 's3cret', '--print',
    '--capacity', '3']);
  await assert.rejects(Leader.connect(w.url()), (err) => err.status === 401);
  await assert.rejects(Leader.connect(w.url(), { token: 'wrong' }), (err) => err.status === 401);
  await assert.rejects(Leader.connect(w.url(), { token: 's3cre' }), (err) => err.status === 401);
  await w.waitLog(/refused a connection from 127\.0\.0\.1 with HTTP 401/);

  const leader = await Leader.connect(w.url(), { token: 's3cret' });
  leader.send(hello('secret-h'));
  leader.send(delivery('d1', [event({ ok: true })]));
  assert.equal((await leader.answer('d1')).type, 'ack');
  await leader.close();
  assert.equal((await w.stop()).code, 0);
  assert.deepEqual(calls(w.workerId)[0], ['register', w.workerId, 'secret-h', w.address, 's3cret', '3']);
});

// --connect: the worker dials a listening leader (played here by a
// WebSocketServer) with its token, is served, and dials again after a close
// or a refusal; no registration, no database
test('--connect: token on the upgrade, served, redials after a close and a 401', async (t) => {
  const tokens = new Set(['cwt_good']);
  const seen = [];
  const server = new WebSocket.Server({
    port: 0,
    host: '127.0.0.1',
    verifyClient: (info) => {
      seen.push(info.req.headers.authorization);
      return tokens.has((info.req.headers.authorization || '').replace(/^Bearer /, ''));
    },
  });
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(() => server.close());
  const connections = [];
  server.on('connection', (ws) => connections.push(new Leader(ws)));
  const dir = secretDir(t);
  const w = await startWorker(t, ['--connect', `ws://127.0.0.1:${server.address().port}/`,
    '--token-file', writeSecret(dir, 'token', 'cwt_good\n'), '--print']);
  assert.equal(w.workerId, null, 'nothing is registered');
  const first = await until(() => connections[0], 'the worker to dial in');
  assert.equal(seen[0], 'Bearer cwt_good');
  first.send(hello('dialed'));
  first.send(delivery('c1', [event({ n: 1 })]));
  assert.equal((await first.answer('c1')).type, 'ack');
  // a refusal, then a close: it dials again each time, within about a second
  tokens.clear();
  const closedAt = Date.now();
  first.ws.close(1001, 'leader going away');
  await until(() => seen.length >= 2, 'a refused redial', 3000);
  await w.waitLog(/could not connect to the leader at ws:\/\/127\.0\.0\.1:\d+\/: .*unauthorized/);
  tokens.add('cwt_good');
  const second = await until(() => connections[1], 'a redial after the refusal', 5000);
  assert.ok(Date.now() - closedAt < 5000, 'redialed within the backoff');
  second.send(delivery('c2', [event({ n: 2 })]));
  assert.equal((await second.answer('c2')).type, 'ack');
  // the ack can come before the test has read the printed line
  await until(() => w.stdoutLines().length >= 2, 'the printed events');
  assert.equal((await w.stop()).code, 0);
  assert.equal(w.stdoutLines().length, 2, 'each event printed once');
});

test('--connect usage: a token is needed, and --listen, --secret or a bad URL are refused', (t) => {
  const dir = secretDir(t);
  const token = writeSecret(dir, 'token', 'cwt_x');
  const run = (args, env = {}) => spawnSync(WORKER, args, {
    encoding: 'utf8', env: { ...process.env, CLUSTER_WORKER_TOKEN: '', ...env },
  });
  const cases = [
    [['--connect', 'ws://127.0.0.1:1/', '--print'], /needs a token/],
    [['--connect', 'http://127.0.0.1:1/', '--token-file', token, '--print'], /ws:\/\/ or wss:\/\//],
    [['--connect', 'ws://127.0.0.1:1/', '--token-file', token, '--listen', '127.0.0.1:0', '--print'], /goes without --listen/],
    [['--connect', 'ws://127.0.0.1:1/', '--secret', 's', '--print'], /--token-file or CLUSTER_WORKER_TOKEN/],
    [['--handler', 'h', '--listen', '127.0.0.1:0', '--token-file', token, '--print'], /go with --connect/],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

// A scratch directory for secret files, removed after the test.
function secretDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-secret-'));
  t.after(() => fs.rmSync(dir, { recursive: true }));
  return dir;
}

function writeSecret(dir, name, content, mode = 0o600) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode); // whatever the umask
  return file;
}

// Worker.start, and a SIGTERM after the test should an assertion fail first.
async function startWorker(t, args, options) {
  const w = await Worker.start(args, options);
  t.after(() => w.stop());
  return w;
}

// An --exec command that fails with what it sees of CLUSTER_WORKER_SECRET.
const SHOW_ENV_SECRET = 'cat >/dev/null; printf "%s" "${CLUSTER_WORKER_SECRET:-unset}" >&2; exit 1';

test('--secret-file: one trailing newline stripped; 401 without the token; a warning if others can read it', async (t) => {
  const dir = secretDir(t);
  const file = writeSecret(dir, 'secret', 'file-s3cret\n');
  const w = await startWorker(t, ['--handler', 'sfile-h', '--secret-file', file, '--print']);
  await assert.rejects(Leader.connect(w.url()), (err) => err.status === 401);
  await assert.rejects(Leader.connect(w.url(), { token: 'wrong' }), (err) => err.status === 401);
  const leader = await Leader.connect(w.url(), { token: 'file-s3cret' });
  leader.send(delivery('f1', [event({ ok: true })]));
  assert.equal((await leader.answer('f1')).type, 'ack');
  await leader.close();
  assert.equal((await w.stop()).code, 0);
  assert.equal(calls(w.workerId)[0][4], 'file-s3cret');
  assert.doesNotMatch(w.stderr, /group or world access/);

  // CRLF, exactly 1024 bytes, and readable by others: accepted with a warning
  const long = 'k'.repeat(1024);
  const open = writeSecret(dir, 'open', `${long}\r\n`, 0o644);
  const w2 = await startWorker(t, ['--handler', 'sfile2-h', '--secret-file', open, '--print']);
  await w2.waitLog(/WARNING: secret file ".*\/open" has group or world access; permissions should be u=rw \(0600\) or less/);
  await assert.rejects(Leader.connect(w2.url(), { token: long.slice(1) }), (err) => err.status === 401);
  const l2 = await Leader.connect(w2.url(), { token: long });
  await l2.close();
  assert.equal((await w2.stop()).code, 0);
  assert.equal(calls(w2.workerId)[0][4], long);
});

test('CLUSTER_WORKER_SECRET: the secret, and not inherited by the --exec commands', async (t) => {
  const env = { CLUSTER_WORKER_SECRET: 'env-s3cret' };
  const w = await startWorker(t, ['--handler', 'senv-h', '--exec', SHOW_ENV_SECRET], { env });
  await assert.rejects(Leader.connect(w.url()), (err) => err.status === 401);
  await assert.rejects(Leader.connect(w.url(), { token: 'wrong' }), (err) => err.status === 401);
  const leader = await Leader.connect(w.url(), { token: 'env-s3cret' });
  leader.send(delivery('e1', [event({})]));
  assert.deepEqual(await leader.answer('e1'), { type: 'fail', deliveryId: 'e1', error: 'unset' });
  await leader.close();
  assert.equal((await w.stop()).code, 0);
  assert.equal(calls(w.workerId)[0][4], 'env-s3cret');

  // --secret-file wins over the variable, which is still not passed on
  const file = writeSecret(secretDir(t), 'secret', 'from-file');
  const w2 = await startWorker(t, ['--handler', 'senv2-h', '--secret-file', file,
    '--exec', SHOW_ENV_SECRET], { env });
  await assert.rejects(Leader.connect(w2.url(), { token: 'env-s3cret' }), (err) => err.status === 401);
  const l2 = await Leader.connect(w2.url(), { token: 'from-file' });
  l2.send(delivery('e2', [event({})]));
  assert.deepEqual(await l2.answer('e2'), { type: 'fail', deliveryId: 'e2', error: 'unset' });
  await l2.close();
  assert.equal((await w2.stop()).code, 0);
  assert.equal(calls(w2.workerId)[0][4], 'from-file');

  // empty: no secret, as with --secret ""
  const w3 = await startWorker(t, ['--handler', 'senv3-h', '--print'], { env: { CLUSTER_WORKER_SECRET: '' } });
  await (await Leader.connect(w3.url())).close();
  assert.equal((await w3.stop()).code, 0);
  assert.equal(calls(w3.workerId)[0][4], '');
});

test('secret errors exit 2 with a clear message: both options, empty, missing, too long, two lines', (t) => {
  const dir = secretDir(t);
  const good = writeSecret(dir, 'good', 'ok\n');
  const base = ['--handler', 'h', '--listen', '127.0.0.1:0', '--print'];
  const run = (args, env = {}) => spawnSync(WORKER, [...base, ...args],
    { encoding: 'utf8', timeout: 5000, env: { ...process.env, ...env } });
  const cases = [
    [['--secret', 'x', '--secret-file', good], /give at most one of --secret and --secret-file/],
    [['--secret-file', good, '--secret', 'x'], /give at most one of --secret and --secret-file/],
    [['--secret-file', writeSecret(dir, 'empty', '')], /secret file ".*\/empty" is empty/],
    [['--secret-file', writeSecret(dir, 'newline', '\n')], /secret file ".*\/newline" is empty/],
    [['--secret-file', path.join(dir, 'missing')],
      /could not open secret file ".*\/missing": No such file or directory/],
    [['--secret-file', dir], /could not read secret file ".*": Is a directory/],
    [['--secret-file', writeSecret(dir, 'long', `${'x'.repeat(1025)}\n`)],
      /secret in ".*\/long" is longer than 1024 bytes/],
    [['--secret-file', writeSecret(dir, 'huge', 'x'.repeat(100000))],
      /secret in ".*\/huge" is longer than 1024 bytes/],
    [['--secret-file', writeSecret(dir, 'two', 'a\nb\n')], /secret in ".*\/two" contains a line break/],
    [['--secret-file', writeSecret(dir, 'nul', 'a\0b')], /secret in ".*\/nul" contains a NUL byte/],
    [['--secret', 'y'.repeat(1025)], /secret in --secret is longer than 1024 bytes/],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /group or world access/);
  }
  const r = run([], { CLUSTER_WORKER_SECRET: 'z'.repeat(1025) });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /secret in CLUSTER_WORKER_SECRET is longer than 1024 bytes/);
});

test("--exec 'cat >/dev/null': concurrent deliveries are acked", async () => {
  const w = await Worker.start(['--handler', 'cat-h', '--exec', 'cat >/dev/null', '--capacity', '2']);
  const leader = await Leader.connect(w.url());
  leader.send(hello('cat-h'));
  const ids = ['a', 'b', 'c', 'd', 'e'];
  for (const id of ids) leader.send(delivery(id, [event({ id }), event({ id, second: true })]));
  for (const id of ids) assert.deepEqual(await leader.answer(id), { type: 'ack', deliveryId: id });
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test("--exec 'exit 3': every event fails with the exit status", async () => {
  const w = await Worker.start(['--handler', 'exit-h', '--exec', 'exit 3']);
  const leader = await Leader.connect(w.url());
  const two = [event({}), event({})];
  leader.send(delivery('x1', [event({})]));
  leader.send(delivery('x2', two));
  assert.deepEqual(await leader.answer('x1'),
    { type: 'fail', deliveryId: 'x1', error: 'command exited with status 3' });
  // each fails alone too: still one answer, an ack that fails both
  assert.deepEqual(await leader.answer('x2'), {
    type: 'ack',
    deliveryId: 'x2',
    failed: two.map((e) => ({ eventId: e.id, error: 'command exited with status 3' })),
  });
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test('--exec: events on stdin as JSON lines, stdout passed through, stderr as the error', async () => {
  const w = await Worker.start(['--handler', 'script-h', '--exec', `exec sh ${SCRIPT}`]);
  const leader = await Leader.connect(w.url());

  // raw text: numbers that a re-encoding through doubles would change
  const raw = '{"type":"events","deliveryId":"echo","fence":7,"events":['
    + '{"id":"1","stream":"s","key":"k","payload":{"do":"echo","a":0.1,"b":12.5,"c":9007199254740993,'
    + '"d":-1e-7,"e":"tab\\tquote\\" \\u00e9 \\ud83d\\ude00","f":[],"g":{}},"headers":null,"createdAt":"t","attempt":2},'
    + '{"id":"2","stream":"s","key":null,"payload":{"do":"echo"},"headers":{"h":"v"},"createdAt":"t","attempt":1}]}';
  leader.sendRaw(raw);
  assert.equal((await leader.answer('echo')).type, 'ack');
  await until(() => w.stdoutLines().length >= 2, 'the echoed events');
  assert.deepEqual(w.stdoutLines(), [
    '{"id":"1","stream":"s","key":"k","payload":{"do":"echo","a":0.1,"b":12.5,"c":9007199254740993,'
      + '"d":-1e-7,"e":"tab\\tquote\\" é 😀","f":[],"g":{}},"headers":null,"createdAt":"t","attempt":2}',
    '{"id":"2","stream":"s","key":null,"payload":{"do":"echo"},"headers":{"h":"v"},"createdAt":"t","attempt":1}',
  ]);

  leader.send(delivery('err', [event({ do: 'stderr' })]));
  assert.deepEqual(await leader.answer('err'),
    { type: 'fail', deliveryId: 'err', error: 'something broke:\n  details é' });

  leader.send(delivery('long', [event({ do: 'long-stderr' })]));
  const long = await leader.answer('long');
  assert.equal(long.type, 'fail');
  assert.equal(Buffer.byteLength(long.error), 1023); // PROTOCOL_MAX_ERROR, less a cut 'é'
  assert.match(long.error, /^x+$/);

  leader.send(delivery('kill', [event({ do: 'kill' })]));
  assert.deepEqual(await leader.answer('kill'),
    { type: 'fail', deliveryId: 'kill', error: 'command killed by signal 9' });

  leader.send(delivery('empty', []));
  assert.deepEqual(await leader.answer('empty'), { type: 'ack', deliveryId: 'empty' });

  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

// Events for handler.sh: "bad" ones make it fail, saying "<name> is bad".
function named(name, bad = false) {
  return event(bad ? { name, bad } : { name });
}

// Every answer to deliveryId, after a ping has gone round: there must be one.
async function allAnswers(leader, deliveryId) {
  leader.send({ type: 'ping' });
  await leader.expect((m) => m.type === 'pong', 'pong');
  return leader.messages.filter((m) => m.deliveryId === deliveryId);
}

test('--exec: a failing batch runs again once per event; one ack fails just the bad events, each with its own stderr', async (t) => {
  const w = await startWorker(t, ['--handler', 'narrow-h', '--exec', `exec sh ${SCRIPT}`]);
  const leader = await Leader.connect(w.url());

  const mixed = [named('g1'), named('b1', true), named('g2'), named('b2', true)];
  leader.send(delivery('mixed', mixed));
  assert.deepEqual(await leader.answer('mixed'), {
    type: 'ack',
    deliveryId: 'mixed',
    failed: [{ eventId: mixed[1].id, error: 'b1 is bad' }, { eventId: mixed[3].id, error: 'b2 is bad' }],
  });
  assert.deepEqual(await allAnswers(leader, 'mixed'), []);
  await w.waitLog(/delivery mixed: the command failed on its 4 events: running it once per event/);
  await w.waitLog(/delivery mixed: 2 of its 4 events failed/);

  // every event fails alone too: still one ack, failing them all
  const bad = [named('b3', true), named('b4', true)];
  leader.send(delivery('all-bad', bad));
  assert.deepEqual(await leader.answer('all-bad'), {
    type: 'ack',
    deliveryId: 'all-bad',
    failed: [{ eventId: bad[0].id, error: 'b3 is bad' }, { eventId: bad[1].id, error: 'b4 is bad' }],
  });
  assert.deepEqual(await allAnswers(leader, 'all-bad'), []);

  // a single event has nothing to narrow: fail, as before
  leader.send(delivery('one', [named('b5', true)]));
  assert.deepEqual(await leader.answer('one'), { type: 'fail', deliveryId: 'one', error: 'b5 is bad' });

  // numeric ids are named as they came; an event without an id can't be
  leader.sendRaw('{"type":"events","deliveryId":"num","events":[{"id":41,"payload":{"name":"g3"}},'
    + '{"id":42,"payload":{"name":"b6","bad":true}}]}');
  assert.deepEqual(await leader.answer('num'),
    { type: 'ack', deliveryId: 'num', failed: [{ eventId: 42, error: 'b6 is bad' }] });
  leader.sendRaw('{"type":"events","deliveryId":"anon","events":[{"id":"43","payload":{"name":"g4"}},'
    + '{"payload":{"name":"b7","bad":true}}]}');
  assert.deepEqual(await leader.answer('anon'), { type: 'fail', deliveryId: 'anon', error: 'b7 is bad' });

  await leader.close();
  assert.equal((await w.stop()).code, 0);

  // a batch that fails only as a batch: each event passes alone, a plain ack
  const w2 = await startWorker(t, ['--handler', 'narrow2-h', '--exec',
    '[ "$(wc -l)" -le 1 ] || { echo "one at a time" >&2; exit 1; }']);
  const l2 = await Leader.connect(w2.url());
  l2.send(delivery('flaky', [named('g5'), named('g6')]));
  assert.deepEqual(await l2.answer('flaky'), { type: 'ack', deliveryId: 'flaky' });
  await l2.close();
  assert.equal((await w2.stop()).code, 0);
});

test('--per-event: the command runs once per event, never on the batch, and one ack fails the bad ones', async (t) => {
  // each run prints how many events it got, then hands them to handler.sh
  const command = `input=$(cat); printf '%s\\n' "$input" | wc -l; printf '%s\\n' "$input" | exec sh ${SCRIPT}`;
  const w = await startWorker(t, ['--handler', 'per-h', '--per-event', '--exec', command]);
  await w.waitLog(/per-event exec mode/);
  const leader = await Leader.connect(w.url());

  const three = [named('g1'), named('b1', true), named('g2')];
  leader.send(delivery('three', three));
  assert.deepEqual(await leader.answer('three'),
    { type: 'ack', deliveryId: 'three', failed: [{ eventId: three[1].id, error: 'b1 is bad' }] });
  assert.deepEqual(await allAnswers(leader, 'three'), []);

  // one event answers the same way; all good, a plain ack
  const one = named('b2', true);
  leader.send(delivery('one-bad', [one]));
  assert.deepEqual(await leader.answer('one-bad'),
    { type: 'ack', deliveryId: 'one-bad', failed: [{ eventId: one.id, error: 'b2 is bad' }] });
  leader.send(delivery('good', [named('g3'), named('g4')]));
  assert.deepEqual(await leader.answer('good'), { type: 'ack', deliveryId: 'good' });
  leader.send(delivery('empty', []));
  assert.deepEqual(await leader.answer('empty'), { type: 'ack', deliveryId: 'empty' });
  await until(() => w.stdoutLines().length >= 6, 'a line per run');
  assert.deepEqual(w.stdoutLines(), ['1', '1', '1', '1', '1', '1']);
  assert.doesNotMatch(w.stderr, /running it once per event/);

  // an event without an id can't be answered on its own
  leader.sendRaw('{"type":"events","deliveryId":"anon","events":[{"payload":{"name":"g5"}}]}');
  assert.deepEqual(await leader.answer('anon'), { type: 'fail', deliveryId: 'anon',
    error: '--per-event answers each event by its id, and an event has none' });
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test('per-event runs take turns in their delivery\'s slot: never more commands than --capacity', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-cap-'));
  t.after(() => fs.rmSync(dir, { recursive: true }));
  // a second command running at the same time finds the lock taken
  const command = `mkdir ${dir}/lock || { echo overlap >&2; exit 1; }; sleep 0.1; rmdir ${dir}/lock`;
  for (const mode of [['--per-event'], []]) {
    const w = await startWorker(t, ['--handler', 'pcap-h', ...mode, '--capacity', '1', '--exec',
      mode.length ? command : `[ "$(wc -l)" -le 1 ] || exit 1; ${command}`]);
    const leader = await Leader.connect(w.url());
    const start = Date.now();
    leader.send(delivery('p1', [named('a'), named('b'), named('c')]));
    leader.send(delivery('p2', [named('d'), named('e'), named('f')]));
    assert.deepEqual(await leader.answer('p1'), { type: 'ack', deliveryId: 'p1' }, mode);
    assert.deepEqual(await leader.answer('p2'), { type: 'ack', deliveryId: 'p2' }, mode);
    assert.ok(Date.now() - start >= 600, `six runs, one after another (${Date.now() - start} ms)`);
    await leader.close();
    assert.equal((await w.stop()).code, 0);
  }
});

test('SIGTERM while a delivery runs its events one by one: they all run, one full answer', async (t) => {
  const w = await startWorker(t, ['--handler', 'pterm-h', '--exec', `sleep 0.3; exec sh ${SCRIPT}`]);
  const leader = await Leader.connect(w.url());
  const events = [named('g1'), named('b1', true), named('g2')];
  leader.send(delivery('slow', events));
  await w.waitLog(/running it once per event/);
  w.signal('SIGTERM');
  await w.waitLog(/shutting down: finishing 1 running and 0 queued deliveries/);
  assert.deepEqual(await leader.answer('slow'),
    { type: 'ack', deliveryId: 'slow', failed: [{ eventId: events[1].id, error: 'b1 is bad' }] });
  assert.equal((await leader.closed).code, 1001);
  assert.deepEqual(await w.exited, { code: 0, signal: null });
});

test('a second signal mid-way through per-event runs: the ack names what ran, the rest is sent again', async (t) => {
  const w = await startWorker(t, ['--handler', 'pkill-h', '--per-event', '--exec',
    'grep -q \'"slow":true\' && sleep 30; exit 0']);
  const leader = await Leader.connect(w.url());
  const events = [event({ n: 1 }), event({ slow: true }), event({ n: 3 })];
  leader.send(delivery('forced', events));
  await sleep(300);
  w.signal('SIGINT');
  await w.waitLog(/shutting down/);
  w.signal('SIGTERM');
  assert.deepEqual(await leader.answer('forced'), {
    type: 'ack',
    deliveryId: 'forced',
    eventIds: [events[0].id],
    failed: [{ eventId: events[1].id, error: 'command killed by signal 9' }],
  });
  assert.deepEqual(await w.exited, { code: 1, signal: null });
});

test('capacity: at most N commands at once, a bounded queue, then refusals', async () => {
  const w = await Worker.start(['--handler', 'cap-h', '--exec', 'sleep 0.4', '--capacity', '2']);
  const leader = await Leader.connect(w.url());
  const start = Date.now();
  for (const id of ['c1', 'c2', 'c3', 'c4']) leader.send(delivery(id, [event({})]));
  const times = [];
  for (const id of ['c1', 'c2', 'c3', 'c4']) {
    assert.equal((await leader.answer(id)).type, 'ack');
    times.push(Date.now() - start);
  }
  assert.ok(times[1] < 750, `first two run together (${times})`);
  assert.ok(times[3] >= 750, `the last two waited for a slot (${times})`);
  await leader.close();
  await w.stop();

  // capacity 1: one runs, 4 wait, the rest fail at once
  const w1 = await Worker.start(['--handler', 'cap1-h', '--exec', 'sleep 0.3', '--capacity', '1']);
  const l1 = await Leader.connect(w1.url());
  const ids = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7'];
  for (const id of ids) l1.send(delivery(id, [event({})]));
  for (const id of ['q6', 'q7']) {
    assert.deepEqual(await l1.answer(id, 1000),
      { type: 'fail', deliveryId: id, error: 'worker is over capacity' });
  }
  for (const id of ids.slice(0, 5)) assert.equal((await l1.answer(id)).type, 'ack');
  await l1.close();
  assert.equal((await w1.stop()).code, 0);
});

test('a fragmented message is reassembled; a 15 MiB one too', async () => {
  const w = await Worker.start(['--handler', 'frag-h', '--exec', 'wc -c']);
  const leader = await Leader.connect(w.url());
  const text = JSON.stringify(delivery('frag', [event({ s: 'fragmented' })]));
  leader.sendRaw(text.slice(0, 10), { fin: false });
  leader.sendRaw(text.slice(10, 30), { fin: false });
  leader.sendRaw(text.slice(30), { fin: true });
  assert.equal((await leader.answer('frag')).type, 'ack');

  const big = event({ s: 'y'.repeat(15 * 1024 * 1024) });
  leader.send(delivery('big', [big]));
  assert.equal((await leader.answer('big', 20000)).type, 'ack');
  await until(() => w.stdoutLines().length >= 2, 'wc output');
  assert.equal(Number(w.stdoutLines()[1]), Buffer.byteLength(JSON.stringify(big)) + 1);
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test('invalid JSON closes with 1007, over 16 MiB with 1009, binary with 1003', async () => {
  const w = await Worker.start(['--handler', 'bad-h', '--print']);

  let leader = await Leader.connect(w.url());
  leader.sendRaw('{"type":"ping"');
  let closed = await leader.closed;
  assert.equal(closed.code, 1007);
  assert.match(closed.reason, /^invalid JSON/);

  // jansson's error quotes half of the "К": the reason stays UTF-8
  leader = await Leader.connect(w.url());
  leader.sendRaw('{"type": "\\u0\u041a"}');
  closed = await leader.closed;
  assert.equal(closed.code, 1007);
  assert.equal(closed.reason, "invalid JSON: invalid escape near '\"\\u0?'");

  leader = await Leader.connect(w.url());
  leader.sendRaw('[1,2]');
  assert.equal((await leader.closed).code, 1007);

  leader = await Leader.connect(w.url());
  leader.sendRaw('"' + 'z'.repeat(16 * 1024 * 1024) + '"');
  closed = await leader.closed;
  assert.equal(closed.code, 1009);

  leader = await Leader.connect(w.url());
  leader.sendRaw(Buffer.from('{"type":"ping"}'), { binary: true });
  assert.equal((await leader.closed).code, 1003);

  // the worker goes on serving
  leader = await Leader.connect(w.url());
  leader.send({ type: 'ping' });
  await leader.expect((m) => m.type === 'pong', 'pong');
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test('malformed events messages are answered or ignored, never fatal', async () => {
  const w = await Worker.start(['--handler', 'odd-h', '--print']);
  const leader = await Leader.connect(w.url());
  leader.sendRaw('{"type":"events","deliveryId":"big-int","fence":7,"events":[{"id":"1","payload":{"n":123456789012345678901234567890}}]}');
  const fail = await leader.answer('big-int');
  assert.equal(fail.type, 'fail');
  assert.match(fail.error, /64 bits/);
  leader.send({ type: 'events', deliveryId: 'no-array', fence: 7, events: {} });
  assert.deepEqual(await leader.answer('no-array'),
    { type: 'fail', deliveryId: 'no-array', error: '"events" must be an array' });
  leader.send({ type: 'events', fence: 7, events: [] });
  leader.send({ notype: true });
  leader.send({ type: 'ping' });
  await leader.expect((m) => m.type === 'pong', 'pong');
  await w.waitLog(/events message from .* without a deliveryId: ignored/);
  await w.waitLog(/message without a type/);
  await leader.close();
  assert.equal((await w.stop()).code, 0);
});

test('heartbeats with --db; registers again once the registration lapses', async () => {
  const conninfo = `host=${process.env.PGHOST} port=${process.env.PGPORT} user=postgres dbname=postgres`;
  const env = { PGHOST: '/nonexistent', PGPORT: '1' }; // only --db can reach the server
  const w = await Worker.start(['--handler', 'beat-h', '--print', '--heartbeat', '1', '--db', conninfo], { env });
  await until(() => calls(w.workerId).filter((c) => c[0] === 'heartbeat').length >= 2, 'two heartbeats', 4000);

  sql(`DELETE FROM cluster.workers WHERE id = '${w.workerId}'`);
  const again = await w.waitLog(/registered as worker (\S+) for handler "beat-h" at .*\n(?:.*\n)*.*registered as worker (\S+)/, 4000);
  const newId = again[2];
  assert.notEqual(newId, w.workerId);
  await w.waitLog(/is no longer registered: registering again/);
  assert.deepEqual(calls(newId)[0], ['register', newId, 'beat-h', w.address, '', '4']);

  assert.equal((await w.stop()).code, 0);
  assert.deepEqual(calls(newId).at(-1), ['unregister', newId, '', '', '', '']);
  assert.equal(sql(`SELECT count(*) FROM cluster.workers WHERE handler = 'beat-h'`), '0');
});

// Make the stub's register_worker or worker_heartbeat raise for a handler.
function failing(handler, fn, sqlstate, message) {
  sql(`INSERT INTO cluster.failures VALUES ('${handler}', '${fn}', '${sqlstate}', '${message.replace(/'/g, "''")}')`);
}

// The exit of a worker that is to stop on its own.
async function exitOf(w, timeout = 8000) {
  await until(() => w.exit, 'the worker to exit', timeout);
  return w.exit;
}

// After the FATAL line, nothing may talk to the database.
function assertQuietAfterFatal(w) {
  const after = w.stderr.slice(w.stderr.indexOf('FATAL'));
  assert.doesNotMatch(after, /heartbeat|registering again|could not register|unregister/, w.stderr);
}

test('the handler dropped: registering again fails with 42704, no more heartbeats, 1001, exit 3', async (t) => {
  const w = await startWorker(t, ['--handler', 'dropped-h', '--print', '--heartbeat', '1']);
  const leader = await Leader.connect(w.url());
  await until(() => calls(w.workerId).some((c) => c[0] === 'heartbeat'), 'a heartbeat', 4000);
  // as the extension does: the handler's workers go with it
  failing('dropped-h', 'register', '42704', 'handler "dropped-h" does not exist');
  sql(`DELETE FROM cluster.workers WHERE id = '${w.workerId}'`);

  assert.deepEqual(await exitOf(w), { code: 3, signal: null });
  assert.match(w.stderr, /worker \S+ is no longer registered: registering again/);
  assert.match(w.stderr, /FATAL: handler "dropped-h" no longer exists/);
  assert.match(w.stderr, /stopping, to exit with status 3/);
  assertQuietAfterFatal(w);
  assert.equal((await leader.closed).code, 1001);
  const beats = calls(w.workerId).length;
  assert.equal(calls(w.workerId).at(-1)[0], 'heartbeat'); // nothing to unregister
  await sleep(1200);
  assert.equal(calls(w.workerId).length, beats);

  // at startup the same failure is an ordinary error: exit 1
  const r = spawnSync(WORKER, ['--handler', 'dropped-h', '--listen', '127.0.0.1:0', '--print'],
    { encoding: 'utf8', timeout: 5000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /FATAL: handler "dropped-h" does not exist/);
});

test('permission revoked: heartbeat and registration fail with 42501; deliveries in flight finish; exit 3', async (t) => {
  const w = await startWorker(t, ['--handler', 'revoked-h', '--heartbeat', '1', '--exec', 'sleep 2.5; cat >/dev/null']);
  const leader = await Leader.connect(w.url());
  leader.send(delivery('inflight', [event({})]));
  await sleep(100);
  // a member of a revoked role: its registration stays, but it may not use it
  failing('revoked-h', 'heartbeat', '42501', `permission denied for worker ${w.workerId}`);
  failing('revoked-h', 'register', '42501', 'permission denied for the workers of handler "revoked-h"');

  await w.waitLog(/FATAL: permission denied: role "postgres" may no longer register workers for handler "revoked-h"/, 4000);
  await w.waitLog(/stopping, to exit with status 3: finishing 1 running and 0 queued deliveries/);
  leader.send(delivery('late', [event({})]));
  assert.deepEqual(await leader.answer('late'),
    { type: 'fail', deliveryId: 'late', error: 'worker is shutting down' });
  assert.deepEqual(await leader.answer('inflight', 5000), { type: 'ack', deliveryId: 'inflight' });
  assert.equal((await leader.closed).code, 1001);
  assert.deepEqual(await exitOf(w), { code: 3, signal: null });
  assertQuietAfterFatal(w);
});

test('the extension gone (3F000, 42883): exit 3, saying it is not installed', async (t) => {
  const cases = [['nosch-h', '3F000', 'schema "cluster" does not exist'],
    ['nofn-h', '42883', 'function cluster.register_worker(text, text, text, integer) does not exist']];
  const workers = await Promise.all(cases.map(([handler]) => startWorker(t,
    ['--handler', handler, '--print', '--heartbeat', '1'])));
  for (const [handler, sqlstate, message] of cases) {
    failing(handler, 'heartbeat', sqlstate, message);
    failing(handler, 'register', sqlstate, message);
  }
  for (const w of workers) {
    assert.deepEqual(await exitOf(w), { code: 3, signal: null });
    assert.match(w.stderr, /FATAL: the cluster extension is not installed in this database/);
    assertQuietAfterFatal(w);
  }
  assert.match(workers[1].stderr, /not in a version with cluster\.register_worker/);
});

test('transient failures (a timeout) are retried at the next heartbeat, never fatal', async (t) => {
  const w = await startWorker(t, ['--handler', 'flaky-h', '--print', '--heartbeat', '1']);
  const timeout = 'canceling statement due to statement timeout';
  failing('flaky-h', 'heartbeat', '57014', timeout);
  await until(() => (w.stderr.match(/heartbeat failed: ERROR: {2}canceling statement/g) || []).length >= 2,
    'two failed heartbeats', 5000);
  assert.doesNotMatch(w.stderr, /registering again/);

  failing('flaky-h', 'register', '57014', timeout);
  sql(`DELETE FROM cluster.failures WHERE handler = 'flaky-h' AND fn = 'heartbeat'`);
  sql(`DELETE FROM cluster.workers WHERE id = '${w.workerId}'`);
  await until(() => (w.stderr.match(/could not register the worker: ERROR: {2}canceling statement/g) || []).length >= 2,
    'two failed registrations', 5000);
  assert.equal(w.exit, null);
  assert.doesNotMatch(w.stderr, /FATAL/);

  sql(`DELETE FROM cluster.failures WHERE handler = 'flaky-h'`);
  const again = await w.waitLog(/registered as worker (\S+) for handler "flaky-h"[^]*registered as worker (\S+)/, 4000);
  assert.notEqual(again[2], w.workerId);
  assert.equal((await w.stop()).code, 0);
  assert.equal(calls(again[2]).at(-1)[0], 'unregister');
});

test('SIGTERM: new deliveries fail, in-flight ones finish, then unregister and exit 0', async () => {
  const w = await Worker.start(['--handler', 'term-h', '--exec', 'sleep 1; cat >/dev/null']);
  const leader = await Leader.connect(w.url());
  leader.send(delivery('slow', [event({})]));
  await sleep(200);
  w.signal('SIGTERM');
  await w.waitLog(/shutting down: finishing 1 running and 0 queued deliveries/);
  leader.send(delivery('late', [event({})]));
  assert.deepEqual(await leader.answer('late'),
    { type: 'fail', deliveryId: 'late', error: 'worker is shutting down' });
  assert.equal(calls(w.workerId).filter((c) => c[0] === 'unregister').length, 0);
  assert.deepEqual(await leader.answer('slow', 5000), { type: 'ack', deliveryId: 'slow' });
  const closed = await leader.closed;
  assert.equal(closed.code, 1001);
  assert.deepEqual(await w.exited, { code: 0, signal: null });
  assert.equal(calls(w.workerId).at(-1)[0], 'unregister');
});

test('a second signal kills the running commands; exit 1', async () => {
  const w = await Worker.start(['--handler', 'kill-h', '--exec', 'sleep 30', '--capacity', '1']);
  const leader = await Leader.connect(w.url());
  leader.send(delivery('long', [event({})]));
  leader.send(delivery('waiting', [event({})]));
  await sleep(200);
  w.signal('SIGINT');
  await w.waitLog(/shutting down/);
  w.signal('SIGTERM');
  assert.deepEqual(await leader.answer('waiting'),
    { type: 'fail', deliveryId: 'waiting', error: 'worker is shutting down' });
  assert.deepEqual(await leader.answer('long'),
    { type: 'fail', deliveryId: 'long', error: 'command killed by signal 9' });
  assert.deepEqual(await w.exited, { code: 1, signal: null });
  assert.equal(calls(w.workerId).at(-1)[0], 'unregister');
});

test('a leader that leaves mid-delivery: the answer is dropped, service goes on', async () => {
  const w = await Worker.start(['--handler', 'gone-h', '--exec', 'sleep 0.3', '--capacity', '1']);
  const first = await Leader.connect(w.url());
  first.send(delivery('orphan', [event({})]));
  first.send(delivery('queued', [event({})]));
  await sleep(100);
  await first.close();
  await w.waitLog(/delivery queued dropped before it started/);
  await w.waitLog(/delivery orphan done, but its connection has closed: ack dropped/);
  const second = await Leader.connect(w.url());
  second.send(delivery('next', [event({})]));
  assert.equal((await second.answer('next')).type, 'ack');
  await second.close();
  assert.equal((await w.stop()).code, 0);
});

test('a leader that leaves during per-event runs: the running one finishes, no more start', async (t) => {
  const w = await startWorker(t, ['--handler', 'pgone-h', '--per-event', '--exec', 'sleep 0.3']);
  const first = await Leader.connect(w.url());
  first.send(delivery('orphan', [event({}), event({}), event({})]));
  await sleep(100);
  await first.close();
  await w.waitLog(/delivery orphan: its connection has closed: 2 of its events left for the leader to send again/);
  await w.waitLog(/delivery orphan done \(0 events failed\), but its connection has closed: ack dropped/);
  const second = await Leader.connect(w.url());
  second.send(delivery('next', [event({})]));
  assert.deepEqual(await second.answer('next'), { type: 'ack', deliveryId: 'next' });
  await second.close();
  assert.equal((await w.stop()).code, 0);
});

test('TLS: wss:// with --tls-cert and --tls-key', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cw-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`], { stdio: 'ignore' });
  const w = await Worker.start(['--handler', 'tls-h', '--print', '--secret', 'tls-secret',
    '--tls-cert', `${dir}/cert.pem`, '--tls-key', `${dir}/key.pem`]);
  assert.match(w.address, /^wss:\/\/127\.0\.0\.1:\d+\/$/);
  const ca = fs.readFileSync(`${dir}/cert.pem`);
  await assert.rejects(Leader.connect(w.url(), { wsOptions: { ca } }), (err) => err.status === 401);
  const leader = await Leader.connect(w.url(), { token: 'tls-secret', wsOptions: { ca } });
  leader.send(delivery('t1', [event({ secure: true })]));
  assert.equal((await leader.answer('t1')).type, 'ack');
  await leader.close();
  assert.equal((await w.stop()).code, 0);
  fs.rmSync(dir, { recursive: true });
});

test('--advertise is what gets registered; a plain HTTP request gets 400', async () => {
  const w = await Worker.start(['--handler', 'adv-h', '--print', '--listen', '127.0.0.1:0',
    '--advertise', 'ws://worker.example:9999/']);
  assert.equal(w.address, 'ws://worker.example:9999/');
  assert.equal(calls(w.workerId)[0][3], 'ws://worker.example:9999/');
  assert.equal((await w.stop()).code, 0);

  const w2 = await Worker.start(['--handler', 'http-h', '--print']);
  const status = await new Promise((resolve, reject) => {
    http.get(w2.url().replace('ws:', 'http:'), (res) => { res.resume(); resolve(res.statusCode); })
      .on('error', reject);
  });
  assert.equal(status, 400);
  assert.equal((await w2.stop()).code, 0);
});

test('startup fails cleanly: no database, port taken', async () => {
  let r = spawnSync(WORKER, ['--handler', 'h', '--listen', '127.0.0.1:0', '--print',
    '--db', 'host=/nonexistent port=1'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /could not connect to the database/);

  const w = await Worker.start(['--handler', 'port-h', '--print']);
  const port = w.address.match(/:(\d+)\/$/)[1];
  r = spawnSync(WORKER, ['--handler', 'h', '--listen', `127.0.0.1:${port}`, '--print'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /could not listen on 127\.0\.0\.1/);
  assert.equal((await w.stop()).code, 0);
});
