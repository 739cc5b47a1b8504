// The seeds' broadcast server on npm `ws`: on every message from any client,
// `wss.clients.forEach(c => c.readyState === OPEN && c.send(msg))`.
//
// It speaks just enough of wshub's hub protocol (docs/protocol.md) for the
// same `wshub bench fanout` load generator to drive it:
//   {"op":"join","room":R,"name":N?,"id":I?} -> {"type":"joined","room":R,"name":..,"members":[],"seq":S,"id":I?}
//   {"op":"publish","room":R,"message":M}    -> to every member of R:
//        {"type":"message","room":R,"from":..,"seq":N,"ts":ms,"message":M}
//   {"op":"leave","room":R}                  -> {"type":"left","room":R}
//   text "ping"                              -> text "pong"
// Everything else gets an error answer. No presence notices, no member lists.
//
// Usage: node broadcast.mjs [--port N] [--host H]
import { WebSocketServer, WebSocket } from 'ws';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9004' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const wss = new WebSocketServer({ host: values.host, port: Number(values.port) });
const seqs = new Map(); // room -> last seq
let nextId = 1;

const reply = (ws, obj, id) => {
  if (id !== undefined) obj.id = id;
  ws.send(JSON.stringify(obj));
};

wss.on('connection', (ws) => {
  ws.connId = nextId++;
  ws.name = `anon-${ws.connId}`;
  ws.rooms = new Set();
  ws.on('error', () => {});
  reply(ws, { type: 'welcome', id: ws.connId, name: ws.name });

  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      return reply(ws, { type: 'error', code: 'binary_unsupported', message: 'binary messages are not supported' });
    }
    const text = data.toString();
    if (text === 'ping') return ws.send('pong');
    let req;
    try {
      req = JSON.parse(text);
    } catch {
      return reply(ws, { type: 'error', code: 'bad_json', message: 'not JSON' });
    }
    if (req === null || typeof req !== 'object' || typeof req.room !== 'string') {
      return reply(ws, { type: 'error', code: 'bad_request', message: 'room missing' }, req?.id);
    }
    const room = req.room;
    switch (req.op) {
      case 'join':
        if (typeof req.name === 'string') ws.name = req.name;
        ws.rooms.add(room);
        return reply(ws, { type: 'joined', room, name: ws.name, members: [], seq: seqs.get(room) ?? 0 }, req.id);
      case 'leave':
        ws.rooms.delete(room);
        return reply(ws, { type: 'left', room }, req.id);
      case 'publish': {
        if (!ws.rooms.has(room)) {
          return reply(ws, { type: 'error', code: 'not_joined', message: 'not joined' }, req.id);
        }
        const seq = (seqs.get(room) ?? 0) + 1;
        seqs.set(room, seq);
        const msg = JSON.stringify({ type: 'message', room, from: ws.name, seq, ts: Date.now(), message: req.message });
        wss.clients.forEach((c) => c.readyState === WebSocket.OPEN && c.rooms.has(room) && c.send(msg));
        return;
      }
      default:
        return reply(ws, { type: 'error', code: 'unknown_op', message: 'unknown op' }, req.id);
    }
  });
});

wss.on('listening', () => {
  console.error(`ws broadcast listening on ws://${values.host}:${values.port}/`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
