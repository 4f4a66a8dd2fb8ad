// pg-cluster-worker: a worker for the cluster PostgreSQL extension.
//
// The application writes one function, handle(events, context), which
// returns (or resolves to) nothing (every event done), or
// { failed: [{ eventId, error }], patch: [...] }; throwing fails the whole
// delivery.  The library does the rest of docs/protocol.md: the
// connection (dialing in with a token, or listening and registering over
// pg with heartbeats), capacity, per-event results, reconnects with
// backoff, and a graceful drain on stop() (or SIGTERM / SIGINT with
// handleSignals).
import { readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import WebSocket, { WebSocketServer } from 'ws';
import pg from 'pg';

const DIAL_MIN_MS = 100;
const DIAL_MAX_MS = 1000; // a takeover's gap stays about a second
const QUEUE_FACTOR = 4; // deliveries waiting for a slot, per slot
const MAX_ERROR = 1024;

const defaultLogger = {
  info: (msg) => console.error(`cluster-worker: ${msg}`),
  warn: (msg) => console.error(`cluster-worker: WARNING: ${msg}`),
};

function errorText(err) {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > MAX_ERROR ? text.slice(0, MAX_ERROR) : text;
}

export class Worker extends EventEmitter {
  constructor(options) {
    super();
    if (typeof options?.handle !== 'function') throw new TypeError('options.handle must be a function');
    if (!options.connect === !options.listen) {
      throw new TypeError('give exactly one of options.connect (dial in) and options.listen (be dialled)');
    }
    if (options.connect && !options.token) throw new TypeError('options.connect needs options.token');
    if (options.listen && !options.register) throw new TypeError('options.listen needs options.register');
    this.options = options;
    this.capacity = options.capacity ?? 4;
    this.log = options.logger ?? defaultLogger;
    this.running = 0;
    this.queue = [];
    this.sockets = new Set();
    this.stopping = false;
    this.drained = null;
    this.handler = options.register?.handler ?? null;
  }

  // Connect (dial in) or listen and register; resolves once started.
  async start() {
    if (this.options.handleSignals) {
      this.onSignal = () => { this.stop().catch((err) => this.log.warn(errorText(err))); };
      process.once('SIGTERM', this.onSignal);
      process.once('SIGINT', this.onSignal);
    }
    if (this.options.connect) {
      this.dial(DIAL_MIN_MS);
      return;
    }
    await this.listen();
    await this.registerWorker();
    const every = this.options.register.heartbeatMs ?? 5000;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), every);
    this.heartbeatTimer.unref?.();
  }

  // Finish what is in flight, refuse the rest, unregister, close (1001).
  async stop() {
    if (this.stopping) return this.drained;
    this.stopping = true;
    this.drained = (async () => {
      this.log.info(`stopping: finishing ${this.running} running and ${this.queue.length} queued deliveries`);
      clearInterval(this.heartbeatTimer);
      clearTimeout(this.dialTimer);
      await new Promise((resolve) => {
        const check = () => (this.running === 0 && this.queue.length === 0 ? resolve() : setTimeout(check, 20));
        check();
      });
      if (this.db) {
        if (this.workerId) {
          await this.db.query('SELECT cluster.unregister_worker($1)', [this.workerId]).catch(() => {});
        }
        await this.db.end().catch(() => {});
      }
      for (const ws of this.sockets) ws.close(1001, 'worker is shutting down');
      if (this.server) await new Promise((resolve) => this.server.close(resolve));
      if (this.onSignal) {
        process.removeListener('SIGTERM', this.onSignal);
        process.removeListener('SIGINT', this.onSignal);
      }
      this.emit('stopped');
    })();
    return this.drained;
  }

  // --- dialing in -------------------------------------------------------

  dial(backoffMs) {
    if (this.stopping) return;
    const { connect, token, ca } = this.options;
    const ws = new WebSocket(connect, {
      headers: { Authorization: `Bearer ${token}` },
      ca: typeof ca === 'string' && !ca.includes('-----BEGIN') ? readFileSync(ca) : ca,
    });
    let next = backoffMs;
    let redialed = false;
    const redial = (why) => {
      if (redialed || this.stopping) return;
      redialed = true;
      this.log.warn(`${why}; dialing again in ${next} ms`);
      this.dialTimer = setTimeout(() => this.dial(Math.min(next * 2, DIAL_MAX_MS)), next);
    };
    ws.on('open', () => {
      next = DIAL_MIN_MS;
      this.log.info(`connected to the leader at ${connect}`);
      this.emit('connected');
    });
    ws.on('unexpected-response', (req, res) => {
      req.destroy();
      redial(`the leader refused the connection: HTTP ${res.statusCode}`);
    });
    ws.on('error', (err) => redial(`connection error: ${errorText(err)}`));
    ws.on('close', (code, reason) => {
      this.sockets.delete(ws);
      this.emit('disconnected', code, reason.toString());
      redial(`connection closed (${code}${reason.length ? `: ${reason}` : ''})`);
    });
    this.serve(ws);
  }

  // --- being dialled ----------------------------------------------------

  async listen() {
    const { host = '127.0.0.1', port = 0, secret } = this.options.listen;
    this.server = new WebSocketServer({
      host,
      port,
      verifyClient: (info) => !secret || info.req.headers.authorization === `Bearer ${secret}`,
    });
    await new Promise((resolve, reject) => {
      this.server.once('listening', resolve);
      this.server.once('error', reject);
    });
    this.port = this.server.address().port;
    this.server.on('connection', (ws) => {
      if (this.stopping) return ws.close(1001, 'worker is shutting down');
      this.emit('connected');
      ws.on('close', () => this.sockets.delete(ws));
      this.serve(ws);
    });
  }

  get address() {
    const reg = this.options.register;
    return reg.address ?? `ws://${this.options.listen.host ?? '127.0.0.1'}:${this.port}/`;
  }

  async registerWorker() {
    const reg = this.options.register;
    if (!this.db) {
      this.db = new pg.Client(reg.pg);
      this.db.on('error', (err) => this.log.warn(`database: ${errorText(err)}`));
      await this.db.connect();
    }
    const { rows } = await this.db.query('SELECT cluster.register_worker($1, $2, $3, $4) AS id',
      [reg.handler, this.address, this.options.listen.secret ?? null, this.capacity]);
    this.workerId = rows[0].id;
    this.log.info(`registered as worker ${this.workerId} of handler "${reg.handler}" at ${this.address}`);
  }

  async heartbeat() {
    try {
      const { rows } = await this.db.query('SELECT cluster.worker_heartbeat($1) AS alive', [this.workerId]);
      if (!rows[0].alive) {
        this.log.warn('the registration lapsed: registering again');
        await this.registerWorker();
      }
    } catch (err) {
      this.log.warn(`heartbeat failed: ${errorText(err)}`);
    }
  }

  // --- the protocol, on either kind of connection ----------------------

  serve(ws) {
    this.sockets.add(ws);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return ws.close(1003, 'binary messages are not part of the protocol');
      let msg;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return ws.close(1007, 'invalid JSON');
      }
      switch (msg?.type) {
        case 'hello':
          this.handler = msg.handler;
          this.fence = msg.fence;
          this.log.info(`hello from leader ${msg.leader}: fence ${msg.fence}, handler "${msg.handler}"`);
          return undefined;
        case 'ping':
          return send(ws, { type: 'pong' });
        case 'events':
          return this.receive(ws, msg);
        default:
          return undefined; // pong and what we don't know
      }
    });
  }

  receive(ws, msg) {
    const { deliveryId } = msg;
    if (typeof deliveryId !== 'string' || !Array.isArray(msg.events)) return;
    if (this.stopping) return send(ws, { type: 'fail', deliveryId, error: 'worker is shutting down' });
    if (this.queue.length >= QUEUE_FACTOR * this.capacity) {
      return send(ws, { type: 'fail', deliveryId, error: 'worker is over capacity' });
    }
    this.queue.push({ ws, msg });
    this.pump();
  }

  pump() {
    while (this.running < this.capacity && this.queue.length > 0) {
      const { ws, msg } = this.queue.shift();
      this.running++;
      this.run(ws, msg).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  async run(ws, msg) {
    const context = {
      deliveryId: msg.deliveryId,
      fence: msg.fence,
      handler: this.handler,
      log: this.log,
    };
    let answer;
    try {
      const result = (await this.options.handle(msg.events, context)) ?? {};
      answer = { type: 'ack', deliveryId: msg.deliveryId };
      if (result.failed?.length) {
        answer.failed = result.failed.map((f) => ({ eventId: String(f.eventId), error: errorText(f.error ?? 'failed') }));
      }
      if (result.patch?.length) answer.patch = result.patch;
    } catch (err) {
      answer = { type: 'fail', deliveryId: msg.deliveryId, error: errorText(err) };
    }
    // the answer belongs to the connection the delivery came on
    send(ws, answer);
  }
}

function send(ws, message) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

export function createWorker(options) {
  return new Worker(options);
}
