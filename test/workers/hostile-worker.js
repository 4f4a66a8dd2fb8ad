// A worker that misbehaves on purpose, for the tests of untrusted input.
// It answers each delivery the way MODE says and appends every close it
// sees to CLOSEFILE as "<code> <reason>\n", so that a test can assert the
// close frame the leader sent (1006 means there was none).
//
// usage: node hostile-worker.js PORT CLOSEFILE MODE
// MODE: deep (an ack nested 100,000 levels), deep-patch (a patch value nested
// 100,000 levels), huge-error (a fail carrying a 10 MB error), foreign-ids
// (an ack of event ids that are not in the delivery), guess (acks of
// deliveryIds never sent), binary (the ack in a binary frame), bad-json,
// many-ops (a patch of 100,000 operations), deep-path (a patch path 3,000
// keys deep), array-key (a patch setting a key inside an array), ping-flood (1,000 pings at once), unknown-flood (100 messages
// of an unknown type, then the ack), ok (acks every delivery), fail-odd (a well-behaved per-event
// answer: acks each delivery with "failed" naming its odd-numbered events,
// each with its own error, and logs "<id> ok|failed <deliveryId>" to
// CLOSEFILE.log), poison (drops the connection without a close frame when a
// delivery holds an event whose payload has "poison", else acks and logs as
// fail-odd does), old-fence (an ack carrying the previous fence before each
// real ack), neighbour (an ack of the deliveryId one below its own, the
// delivery sent before it, then the real ack).
'use strict';
const fs = require('fs');
const { WebSocketServer } = require('ws');

const [port, closeFile, mode] = process.argv.slice(2);
const wss = new WebSocketServer({ port: Number(port), host: '127.0.0.1' });
wss.on('listening', () => console.log(`listening on ${port}`));
wss.on('connection', (ws) => {
  ws.on('close', (code, reason) => fs.appendFileSync(closeFile, `${code} ${reason}\n`));
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.type === 'ping') return ws.send(JSON.stringify({ type: 'pong' }));
    if (msg.type !== 'events') return;
    const ack = { type: 'ack', deliveryId: msg.deliveryId };
    switch (mode) {
      case 'deep':
        return ws.send(`{"type": "ack", "deliveryId": "${msg.deliveryId}", "x": ${'['.repeat(100000)}${']'.repeat(100000)}}`);
      case 'deep-patch':
        return ws.send(`{"type": "ack", "deliveryId": "${msg.deliveryId}", "patch": [{"op": "set", "path": ["a"], "value": ${'['.repeat(100000)}${']'.repeat(100000)}}]}`);
      case 'huge-error':
        return ws.send(JSON.stringify({ type: 'fail', deliveryId: msg.deliveryId, error: 'e'.repeat(10 * 1024 * 1024) }));
      case 'foreign-ids':
        return ws.send(JSON.stringify({ ...ack, eventIds: ['999999999'] }));
      case 'guess':
        return ws.send(JSON.stringify({ type: 'ack', deliveryId: String(Number(msg.deliveryId.split('-').pop()) + 1000) }));
      case 'binary':
        return ws.send(Buffer.from(JSON.stringify(ack)), { binary: true });
      case 'bad-json':
        return ws.send('{"type": "ack", "deliveryId": ');
      case 'many-ops':
        return ws.send(JSON.stringify({ ...ack, patch: Array.from({ length: 100000 }, (_, i) => ({ op: 'set', path: [`k${i}`], value: i })) }));
      case 'deep-path':
        return ws.send(JSON.stringify({ ...ack, patch: [{ op: 'set', path: Array.from({ length: 3000 }, (_, i) => `p${i}`), value: 1 }] }));
      case 'array-key':
        // a valid patch that can't be applied: a key into an array
        return ws.send(JSON.stringify({ ...ack, patch: [{ op: 'set', path: ['arr'], value: [1, 2] },
          { op: 'set', path: ['arr', 'x'], value: 1 }] }));
      case 'ping-flood':
        for (let i = 0; i < 1000; i++) ws.send(JSON.stringify({ type: 'ping' }));
        return;
      case 'unknown-flood':
        for (let i = 0; i < 100; i++) ws.send(JSON.stringify({ type: 'gossip', i }));
        return ws.send(JSON.stringify(ack));
      case 'fail-odd': {
        const odd = msg.events.filter((e) => e.payload.n % 2 === 1);
        fs.appendFileSync(`${closeFile}.log`, msg.events.map((e) =>
          `${e.id} ${e.payload.n % 2 === 1 ? 'failed' : 'ok'} ${msg.deliveryId}\n`).join(''));
        return ws.send(JSON.stringify({ ...ack, failed: odd.map((e) => ({ eventId: e.id, error: `odd ${e.payload.n}` })) }));
      }
      case 'poison':
        // a batch with a poison event kills the connection (no close frame)
        if (msg.events.some((e) => e.payload.poison)) return ws.terminate();
        fs.appendFileSync(`${closeFile}.log`, msg.events.map((e) => `${e.id} ok ${msg.deliveryId}\n`).join(''));
        return ws.send(JSON.stringify(ack));
      case 'neighbour': {
        // first an ack of the delivery sent just before this one (most
        // likely another worker's), then the real one
        const parts = msg.deliveryId.split('.');
        parts[parts.length - 1] = String(Number(parts[parts.length - 1]) - 1);
        ws.send(JSON.stringify({ type: 'ack', deliveryId: parts.join('.') }));
        return ws.send(JSON.stringify(ack));
      }
      case 'old-fence':
        // first an answer for an earlier leader's fence, then the real one
        ws.send(JSON.stringify({ ...ack, fence: msg.fence - 1 }));
        return ws.send(JSON.stringify(ack));
      default:
        return ws.send(JSON.stringify(ack));
    }
  });
});
process.on('SIGTERM', () => process.exit(0));
