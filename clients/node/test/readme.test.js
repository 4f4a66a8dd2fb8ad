// The README's dial-in example runs as written: its code block, with the
// test server's endpoint for 127.0.0.1:7800, as a program of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync, mkdtempSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));

test('the README example handles events, fails one, patches the state, and stops on SIGTERM', async (t) => {
  const readme = readFileSync(path.join(here, '..', 'README.md'), 'utf8');
  const code = readme.match(/```js\n(\/\/ mailer\.mjs[\s\S]*?)```/)[1]
    .replace('ws://127.0.0.1:7800/', process.env.CLUSTER_LISTEN);
  // a directory of its own where 'pg-cluster-worker' is this package, as
  // after npm install
  const dir = mkdtempSync(path.join(os.tmpdir(), 'readme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(path.join(here, '..'), path.join(dir, 'node_modules', 'pg-cluster-worker'));
  const file = path.join(dir, 'mailer.mjs');
  writeFileSync(file, code);

  const db = new pg.Client();
  await db.connect();
  t.after(() => db.end());
  await db.query("SELECT cluster.create_pump('orders')");
  await db.query("SELECT cluster.create_handler('mailer', 'orders', max_attempts => 1)");
  const { rows: [{ token }] } = await db.query("SELECT cluster.issue_worker_token('mailer', capacity => 4) AS token");

  const child = spawn(process.execPath, [file], { env: { ...process.env, CLUSTER_WORKER_TOKEN: token } });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', () => {});
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(signal ?? code));
    child.on('error', (err) => resolve(err.message)); // it did not start
  });
  // however the test ends, the example does not outlive it (the runner
  // would wait for it): killed, and waited for
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  await db.query(`SELECT cluster.publish('orders', p) FROM (VALUES ('{"email": "a@example.com"}'::jsonb),
                  ('{"email": "b@example.com"}'), ('{"name": "no mail"}')) v(p)`);
  const deadline = Date.now() + 20000;
  for (;;) {
    const { rows: [r] } = await db.query(`SELECT h.lag_events = 0 AND h.dead_letters = 1 AS done
                                            FROM cluster.handlers h WHERE h.name = 'mailer'`);
    if (r.done) break;
    assert.ok(Date.now() < deadline, `the example handled the events; it printed:\n${out}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.match(out, /mailer: mail to a@example\.com/);
  assert.match(out, /mailer: mail to b@example\.com/);
  const { rows: [s] } = await db.query("SELECT cluster.handler_state('mailer') ? 'last_delivery' AS patched");
  assert.equal(s.patched, true);
  child.kill('SIGTERM');
  const status = await Promise.race([exited,
    new Promise((resolve) => setTimeout(resolve, 20000, 'still running 20 s after SIGTERM').unref())]);
  assert.equal(status, 0, `the example exits 0 on SIGTERM; it printed:\n${out}`);
});
