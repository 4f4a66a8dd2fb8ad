'use strict';
// Test harness for cluster-worker: start the worker, play the leader over
// WebSocket, and read the stub registry in the scratch database.
//
// Environment: CW_WORKER (the binary), and the PG* variables of the scratch
// server (set by test/run).

const { spawn, execFileSync } = require('node:child_process');
const WebSocket = require('ws');

const WORKER = process.env.CW_WORKER || `${__dirname}/../cluster-worker`;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Poll fn until it returns a truthy value; fail after timeout ms.
async function until(fn, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function sql(query) {
  return execFileSync('psql', ['-XAtq', '-F', '|', '-c', query], { encoding: 'utf8' }).trim();
}

function sqlRows(query) {
  const out = sql(query);
  return out === '' ? [] : out.split('\n').map((line) => line.split('|'));
}

class Worker {
  // args: cluster-worker's options; --listen 127.0.0.1:0 is added unless given.
  static async start(args, { env = {}, wrapper = [], timeout = 10000 } = {}) {
    const w = new Worker();
    const full = args.includes('--listen') || args.includes('--connect')
      ? args : ['--listen', '127.0.0.1:0', ...args];
    const argv = [...wrapper, WORKER, ...full];
    w.child = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    w.stdout = '';
    w.stderr = '';
    w.child.stdout.on('data', (d) => { w.stdout += d; });
    w.child.stderr.on('data', (d) => { w.stderr += d; });
    w.exit = null;
    // 'exit' can come before the last of stderr has been read: the exit
    // counts once stderr is closed too (the worker's commands never hold
    // it: their stderr is a pipe of the worker's own).
    const exit = new Promise((resolve) => {
      w.child.on('exit', (code, signal) => resolve({ code, signal }));
    });
    const drained = new Promise((resolve) => w.child.stderr.on('close', resolve));
    w.exited = Promise.all([exit, drained]).then(([status]) => {
      w.exit = status;
      return status;
    });
    const m = await until(() => {
      if (w.exit) throw new Error(`worker exited early (${JSON.stringify(w.exit)}):\n${w.stderr}`);
      return w.stderr.match(/serving handler "[^"]*" (?:at|dialing in to) (\S+)/);
    }, 'the worker to start', timeout);
    w.address = m[1];
    const registered = w.stderr.match(/registered as worker (\S+)/);
    w.workerId = registered ? registered[1] : null;
    return w;
  }

  url() {
    return this.address;
  }

  async waitLog(pattern, timeout = 5000) {
    return until(() => this.stderr.match(pattern), `log ${pattern}`, timeout);
  }

  stdoutLines() {
    return this.stdout.split('\n').filter((line) => line !== '');
  }

  signal(name) {
    this.child.kill(name);
  }

  // SIGTERM, then wait for the exit; returns { code, signal }.
  async stop(timeout = 10000) {
    if (!this.exit) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeout);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

class Leader {
  // Resolves once open; rejects with err.status set on an HTTP refusal.
  static connect(url, { token, wsOptions = {} } = {}) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, ...wsOptions });
      ws.once('open', () => resolve(new Leader(ws)));
      ws.once('unexpected-response', (req, res) => {
        const err = new Error(`HTTP ${res.statusCode}`);
        err.status = res.statusCode;
        req.destroy();
        reject(err);
      });
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()));
      this.waiters.splice(0).forEach((wake) => wake());
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.waiters.splice(0).forEach((wake) => wake());
        resolve({ code, reason: reason.toString() });
      });
    });
    ws.on('error', () => {});
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  sendRaw(data, options = {}) {
    this.ws.send(data, options);
  }

  // The first message that matches, waiting for it if need be.
  async expect(predicate, what = 'a message', timeout = 5000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const i = this.messages.findIndex(predicate);
      if (i >= 0) return this.messages.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`no ${what}; got ${JSON.stringify(this.messages)}`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  answer(deliveryId, timeout = 5000) {
    return this.expect((m) => m.deliveryId === deliveryId, `answer to ${deliveryId}`, timeout);
  }

  close() {
    this.ws.close(1000);
    return this.closed;
  }
}

let nextEventId = 1;

function event(payload, key = 'k1') {
  const id = String(nextEventId++);
  return {
    id, stream: 'orders', key, payload, headers: { source: 'test' },
    createdAt: '2024-05-01T12:00:00.000Z', attempt: 1,
  };
}

function delivery(deliveryId, events, fence = 7) {
  return { type: 'events', deliveryId, fence, events };
}

function hello(handler) {
  return { type: 'hello', protocol: 1, leader: 'test-leader/1', fence: 7, handler };
}

module.exports = {
  Worker, Leader, event, delivery, hello, sql, sqlRows, sleep, until,
};
