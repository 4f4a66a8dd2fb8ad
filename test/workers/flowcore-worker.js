// A worker that speaks only the Flowcore data-pump cluster protocol:
// JSON text frames "events" (answered with "ack" or "fail" by deliveryId)
// and "ping" / "pong".  It knows nothing of this project's extra messages
// ("hello") or fields, and ignores them as such a worker does.
//
// usage: node flowcore-worker.js PORT LOGFILE [--fail-every N] [--slow MS]
//        [--secret S] [--never-answer] [--bad-fence] [--bad-json]
// --latency FILE: for each event, append "<event id> <ms since the epoch
// when the worker received it> <ms after the payload's "t">" (t: an ISO
// timestamp taken when published; "-" without one).
// --tls-cert FILE --tls-key FILE: serve wss:// instead of ws://.
// --huge: answer every delivery with a 17 MB message (over the leader's limit).
// --answer MODE: answer each delivery another way, for the tests of the
// protocol: patch (ack with a state patch counting events), fail (fail it),
// dup (ack it twice), foreign (ack a deliveryId never sent), type (send a
// message of an unknown type first).
// --bad-fence and --bad-json misbehave on purpose (tests of untrusted input):
// the ack carries a fence ahead of the leader's, or the answer is not JSON.
// Every event it acks is appended to LOGFILE as "<event id> <key>\n".
// With LOGFILE "-" (nothing logged) and neither --latency, --answer nor
// --bad-fence, nothing needs the events: the worker reads only the
// delivery's id from the head of the message (the leader sends "type" and
// "deliveryId" first) instead of parsing every event, so that it costs
// little beside the leader in the benchmarks; any other message is parsed
// whole.
'use strict';
const fs = require('fs');
const https = require('https');
const { WebSocket, WebSocketServer } = require('ws');

const [port, logfile, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : dflt;
};
const failEvery = Number(opt('--fail-every', 0));
const slowMs = Number(opt('--slow', 0));
const secret = opt('--secret', null);
const neverAnswer = rest.includes('--never-answer');
const badFence = rest.includes('--bad-fence');
const badJson = rest.includes('--bad-json');
const latencyFile = opt('--latency', null);
// latency lines are written every 50 ms off the event loop: a synchronous
// write per message stalls now and then (a journal commit) and would delay
// the messages behind it, adding the disk's hiccups to the figures
let latencyLines = [];
if (latencyFile) {
  setInterval(() => {
    if (latencyLines.length === 0) return;
    const data = latencyLines.join('');
    latencyLines = [];
    fs.appendFile(latencyFile, data, () => {});
  }, 50);
}
const answerMode = opt('--answer', null);
let counted = 0;
const { performance } = require('perf_hooks');
let deliveries = 0;

const huge = rest.includes('--huge');
const tlsCert = opt('--tls-cert', null);
const verifyClient = (info) =>
  !secret || info.req.headers.authorization === `Bearer ${secret}`;
// --connect URL --token TOKEN: dial the leader instead of listening (PORT
// is ignored); "connected" and "refused: HTTP <status>" are printed, and
// the worker dials again 100 ms after a close, doubling to 1 s.
const connectUrl = opt('--connect', null);
// --host H: the address to listen on (default 127.0.0.1)
const bindHost = opt('--host', '127.0.0.1');
const token = opt('--token', null);
let wss;
if (connectUrl) {
  wss = null;
} else if (tlsCert) {
  const server = https.createServer({
    cert: fs.readFileSync(tlsCert),
    key: fs.readFileSync(opt('--tls-key', null)),
  });
  wss = new WebSocketServer({ server, verifyClient });
  server.listen(Number(port), bindHost, () => console.log(`listening on ${port}`));
} else {
  wss = new WebSocketServer({ port: Number(port), host: bindHost, verifyClient });
}
const headOnly = logfile === '-' && !latencyFile && !answerMode && !badFence;
const eventsHead = /^\{\s*"type"\s*:\s*"events"\s*,\s*"deliveryId"\s*:\s*("(?:[^"\\]|\\.)*")\s*,/;
// the message, or for a delivery when headOnly, just its type and id
function parse(data) {
  if (headOnly) {
    const m = eventsHead.exec(data.toString('utf8', 0, Math.min(data.length, 512)));
    if (m) return { type: 'events', deliveryId: JSON.parse(m[1]) };
  }
  return JSON.parse(data.toString());
}
// ms since the epoch of an ISO timestamp with microseconds: Date.parse
// keeps only milliseconds, which would add half a millisecond on average
function publishedAt(t) {
  const fraction = /\.(\d+)/.exec(t);
  const micros = fraction ? Number((fraction[1] + '000000').slice(0, 6)) : 0;
  return Date.parse(t.replace(/\.\d+/, '')) + micros / 1000;
}
function serve(ws) {
  ws.on('message', (data) => {
    const msg = parse(data);
    if (msg.type === 'ping') return ws.send(JSON.stringify({ type: 'pong' }));
    if (msg.type !== 'events') return; // hello and anything else: not ours
    if (latencyFile) {
      const now = performance.timeOrigin + performance.now();
      const lines = msg.events.map((e) => `${e.id} ${now.toFixed(3)} ${
        e.payload && e.payload.t ? (now - publishedAt(e.payload.t)).toFixed(3) : '-'}\n`).join('');
      latencyLines.push(lines);
    }
    if (neverAnswer) return;
    if (answerMode) return answerAs(ws, msg);
    if (huge) return ws.send(JSON.stringify({ type: 'ack', deliveryId: msg.deliveryId, pad: 'x'.repeat(17 * 1024 * 1024) }));
    if (badJson) return ws.send('{"type": "ack", "deliveryId": ');
    if (badFence) return ws.send(JSON.stringify({ type: 'ack', deliveryId: msg.deliveryId, fence: msg.fence + 1 }));
    deliveries++;
    const fail = failEvery > 0 && deliveries % failEvery === 0;
    const answer = () => {
      if (fail) {
        ws.send(JSON.stringify({ type: 'fail', deliveryId: msg.deliveryId, error: 'failing on purpose' }));
        return;
      }
      if (logfile !== '-')
        fs.appendFileSync(logfile, msg.events.map((e) => `${e.id} ${e.key}\n`).join(''));
      ws.send(JSON.stringify({ type: 'ack', deliveryId: msg.deliveryId }));
    };
    // at once unless --slow: a timer of 0 ms still waits for the next turn
    // of the loop, at least 1 ms
    if (slowMs > 0) setTimeout(answer, slowMs);
    else answer();
  });
}
function dial(backoffMs) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const ca = opt('--ca', null);
  const ws = new WebSocket(connectUrl, { headers, ca: ca ? fs.readFileSync(ca) : undefined });
  let next = backoffMs;
  let redialed = false;
  const redial = () => {
    if (redialed) return;
    redialed = true;
    setTimeout(() => dial(Math.min(next * 2, 1000)), next);
  };
  ws.on('open', () => { next = 100; console.log('connected'); });
  ws.on('unexpected-response', (req, res) => {
    console.log(`refused: HTTP ${res.statusCode}`);
    req.destroy();
    redial(); // no 'close' follows a refused upgrade
  });
  ws.on('error', redial);
  ws.on('close', (code, reason) => {
    console.log(`closed: ${code} ${reason}`);
    redial();
  });
  serve(ws);
}
if (connectUrl) {
  dial(100);
  console.log('listening (dialing in)');
} else {
  wss.on('connection', serve);
}
function answerAs(ws, msg) {
  const send = (m) => ws.send(JSON.stringify(m));
  const ack = { type: 'ack', deliveryId: msg.deliveryId };
  if (logfile !== '-' && answerMode !== 'fail')
    fs.appendFileSync(logfile, msg.events.map((e) => `${e.id} ${e.key}\n`).join(''));
  switch (answerMode) {
    case 'patch':
      counted += msg.events.length;
      return send({ ...ack, patch: [{ op: 'set', path: ['seen'], value: counted },
        ...msg.events.map((e) => ({ op: 'set', path: ['ids', e.id], value: e.attempt }))] });
    case 'fail':
      return send({ type: 'fail', deliveryId: msg.deliveryId, error: `worker refuses ${msg.events.length} events` });
    case 'dup':
      send(ack);
      return send(ack);
    case 'foreign':
      return send({ type: 'ack', deliveryId: 'not-a-delivery' });
    case 'type':
      send({ type: 'gossip', text: 'hello there' });
      return send(ack);
  }
}

if (wss) wss.on('listening', () => console.log(`listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
