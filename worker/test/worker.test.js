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
    '--db', '--heartbeat', '--exec', '--print', '--tls-cert', '--tls-key', '--help']) {
    assert.match(help, new RegExp(`\\s${option}\\b`), option);
  }
  assert.equal(spawnSync(WORKER, []).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', ':0']).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', 'x', '--print']).status, 2);
  assert.equal(spawnSync(WORKER, ['--handler', 'h', '--listen', ':0', '--print',
    '--exec', 'true']).status, 2);
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

test("--exec 'exit 3': every delivery fails with the exit status", async () => {
  const w = await Worker.start(['--handler', 'exit-h', '--exec', 'exit 3']);
  const leader = await Leader.connect(w.url());
  leader.send(delivery('x1', [event({})]));
  leader.send(delivery('x2', [event({}), event({})]));
  assert.deepEqual(await leader.answer('x1'),
    { type: 'fail', deliveryId: 'x1', error: 'command exited with status 3' });
  assert.deepEqual(await leader.answer('x2'),
    { type: 'fail', deliveryId: 'x2', error: 'command exited with status 3' });
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
  assert.equal(Buffer.byteLength(long.error), 4095); // 4096 bytes, less a cut 'é'
  assert.match(long.error, /^x+$/);

  leader.send(delivery('kill', [event({ do: 'kill' })]));
  assert.deepEqual(await leader.answer('kill'),
    { type: 'fail', deliveryId: 'kill', error: 'command killed by signal 9' });

  leader.send(delivery('empty', []));
  assert.deepEqual(await leader.answer('empty'), { type: 'ack', deliveryId: 'empty' });

  await leader.close();
  assert.equal((await w.stop()).code, 0);
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
