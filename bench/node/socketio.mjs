// A Socket.IO 4 server on the Redis adapter (@socket.io/redis-adapter, the
// `redis` client): one node of a hub of several, for bench/compare's
// fan-out row with 3 nodes on one Redis. Start it once per node, each with
// its own --port and the same --redis-url.
//
// It is the fan-out the Socket.IO documentation shows, with a sequence
// number so that the load client (socketio-fanout.mjs) can count what it
// lost:
//   emit("join", room, ack)       -> socket.join(room); ack({ seq: S })
//   emit("publish", room, message) -> io.to(room).emit("message",
//        { room, from, seq: N, ts: ms, message })
// `io.to(room).emit` reaches the members on this node directly and those on
// the others through Redis Pub/Sub (the adapter). `seq` is counted by the
// node that takes the publish: with one publisher, as in the benchmark, it
// numbers the room's messages in order; the adapter keeps no history and
// gives no offsets, so a subscriber that reconnects cannot resume.
//
// Usage: node socketio.mjs --port N --redis-url redis://127.0.0.1:6379 [--host H]
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9005' },
    host: { type: 'string', default: '127.0.0.1' },
    'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
  },
});

const pubClient = createClient({ url: values['redis-url'] });
const subClient = pubClient.duplicate();
for (const c of [pubClient, subClient]) c.on('error', (e) => console.error(`redis: ${e.message}`));
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, { adapter: createAdapter(pubClient, subClient) });
const seqs = new Map(); // room -> last seq numbered by this node

io.on('connection', (socket) => {
  socket.on('join', (room, ack) => {
    if (typeof room !== 'string') return;
    socket.join(room);
    if (typeof ack === 'function') ack({ seq: seqs.get(room) ?? 0 });
  });
  socket.on('publish', (room, message) => {
    if (typeof room !== 'string' || !socket.rooms.has(room)) return;
    const seq = (seqs.get(room) ?? 0) + 1;
    seqs.set(room, seq);
    io.to(room).emit('message', { room, from: socket.id, seq, ts: Date.now(), message });
  });
});

httpServer.listen(Number(values.port), values.host, () => {
  console.error(`socket.io (redis adapter ${values['redis-url']}) listening on http://${values.host}:${values.port}/`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
