// The browser client library (crates/wshub-hub/assets/wshub.js) in Node,
// against real `wshub serve` processes, with the ws package's WebSocket:
//
//   WSHUB_BIN=target/release/wshub node --test tests/browser/library.test.mjs
//
// Requests answered as promises, refusals, the offline queue, backoff,
// resume after a dropped connection and after the hub restarts (on Redis,
// so its history outlives the process; in memory, where it does not and
// the client is told so), the heartbeat timeout, and close on purpose.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { HubSocket, HubError, DEFAULTS } from '../../crates/wshub-hub/assets/wshub.js';
import {
  HubProcess, Relay, apiPublish, sleep, startRedis, stopAll, tempDir, until, watchdog,
} from './common.mjs';

const API_KEY = 'library-test-key-0123456789abcdef';
const dir = tempDir('wshub-library-');
const KEY_FILE = path.join(dir, 'api.key');
fs.writeFileSync(KEY_FILE, API_KEY);
const stopWatch = watchdog('library.test.mjs', 150_000);

// A quick keepalive, so that the hub lets a stalled connection go (and its
// member's name with it) within 2 s rather than 35.
const memoryHub = new HubProcess(['--api-key-file', KEY_FILE, '--ping-interval', '1s', '--pong-timeout', '1s']);
let redisHub;
let relay;                  // in front of memoryHub
const clients = [];

// Fast timings, so that a test waits little for a reconnect.
const FAST = { WebSocket, reconnectDelay: 50, reconnectDelayMax: 400, requestTimeout: 5000 };

function client(url, options = {}) {
  const c = new HubSocket(url, { ...FAST, ...options });
  clients.push(c);
  // Everything it tells, for assertions.
  c.seen = { message: [], close: [], reconnecting: [], joined: [], gap: [], huberror: [], statechange: [] };
  for (const type of Object.keys(c.seen)) c.addEventListener(type, (e) => c.seen[type].push(e.detail));
  return c;
}
const direct = () => `ws://127.0.0.1:${memoryHub.port}/ws`;
const viaRelay = () => `ws://127.0.0.1:${relay.port}/ws`;
const wsUrl = (hub) => `ws://127.0.0.1:${hub.port}/ws`;
const unique = (tag) => `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const texts = (c, room) => c.seen.message.filter((m) => m.room === room).map((m) => m.message);

function waitState(c, state, timeoutMs = 10_000) {
  return until(`state ${state} (now ${c.state})`, () => c.state === state, timeoutMs);
}
function waitTexts(c, room, want, timeoutMs = 10_000) {
  return until(`messages ${JSON.stringify(want)} in ${room} (have ${JSON.stringify(texts(c, room))})`,
    () => want.every((t) => texts(c, room).includes(t)), timeoutMs);
}

before(async () => {
  await memoryHub.startReady();
  relay = new Relay([memoryHub.port]);
  await relay.start();
});

after(async () => {
  for (const c of clients) c.close();
  await relay?.stop();
  await stopAll();
  clearTimeout(stopWatch);
});

test('the WebSocket shape: constants, url, readyState through open and close', async () => {
  assert.equal(HubSocket.OPEN, 1);
  assert.equal(HubSocket.CLOSED, 3);
  const c = client(direct());
  assert.equal(c.url, direct());
  assert.equal(c.readyState, HubSocket.CONNECTING);
  assert.equal(c.CONNECTING, 0);
  const opened = new Promise((resolve) => { c.onopen = resolve; });
  await opened;
  assert.equal(c.readyState, 1);
  assert.equal(c.protocol, '');
  assert.equal(typeof c.clientId, 'number');
  assert.equal(c.bufferedAmount, 0);
  const closed = new Promise((resolve) => { c.onclose = resolve; });
  c.close();
  assert.equal(c.readyState, HubSocket.CLOSING);
  const event = await closed;
  assert.equal(event.detail.code, 1000);
  assert.equal(event.detail.willReconnect, false);
  assert.equal(c.readyState, HubSocket.CLOSED);
  // Node 20 has no WebSocket of its own: one must be given.
  assert.throws(() => new HubSocket(direct()), TypeError);
});

test('join, publish and leave resolve with the hub\'s answers; a repeated key publishes once', async () => {
  const room = unique('room');
  const ada = client(direct());
  const bob = client(direct());
  const joined = await ada.join(room, { name: 'ada' });
  assert.equal(joined.type, 'joined');
  assert.equal(joined.room, room);
  assert.equal(joined.name, 'ada');
  assert.equal(ada.name, 'ada');
  assert.deepEqual(ada.rooms, [room]);
  await bob.join(room, { name: 'bob' });

  const first = await ada.publish(room, 'one', { key: 'k-1' });
  assert.equal(first.type, 'published');
  assert.equal(first.offset, joined.offset + 1);
  assert.equal(first.epoch, joined.epoch);
  assert.equal(first.duplicate, false);
  const again = await ada.publish(room, 'one again', { key: 'k-1' });
  assert.equal(again.duplicate, true);
  assert.equal(again.offset, first.offset);
  const second = await ada.publish(room, { n: 2 });
  assert.equal(second.offset, first.offset + 1);

  await waitTexts(bob, room, ['one']);
  await until('bob has the second message', () => bob.seen.message.some((m) => m.offset === second.offset));
  const got = bob.seen.message.filter((m) => m.room === room);
  assert.deepEqual(got.map((m) => m.message), ['one', { n: 2 }], 'each message once, the duplicate not at all');
  assert.equal(got[0].from_id, ada.clientId);
  assert.deepEqual(bob.position(room), { epoch: second.epoch, offset: second.offset });

  const left = await ada.leave(room);
  assert.equal(left.type, 'left');
  assert.deepEqual(ada.rooms, []);
  await bob.publish(room, 'after ada left');
  await waitTexts(bob, room, ['after ada left']);
  assert.ok(!texts(ada, room).includes('after ada left'), 'no message of a room left');
});

test('a request the hub refuses rejects with its error code', async () => {
  const room = unique('room');
  const ada = client(direct());
  const eve = client(direct());
  await ada.join(room, { name: 'ada' });
  await assert.rejects(eve.join(room, { name: 'ada' }), (e) => {
    assert.ok(e instanceof HubError);
    assert.equal(e.code, 'name_taken');
    assert.equal(e.answer.type, 'error');
    return true;
  });
  assert.deepEqual(eve.rooms, [], 'a refused join is not kept');
  await assert.rejects(eve.publish(room, 'not a member'), { code: 'not_joined' });
  await assert.rejects(eve.leave(room), { code: 'not_joined' });
  await assert.rejects(eve.join(''), { code: 'bad_request' });
  // The connection stays open, and usable.
  assert.equal(eve.readyState, 1);
  assert.equal((await eve.join(room, { name: 'eve' })).name, 'eve');
  // A new name refused on a room joined already: still a member, as 'eve'.
  await assert.rejects(eve.join(room, { name: 'ada' }), { code: 'name_taken' });
  assert.deepEqual(eve.rooms, [room]);
  await eve.publish(room, 'still here');
  await waitTexts(ada, room, ['still here']);
  assert.equal(ada.seen.message.find((m) => m.message === 'still here').from, 'eve');
});

test('while disconnected, sends and publishes wait in a bounded queue and go out after the reconnect; backoff is full jitter', async () => {
  const room = unique('room');
  const watcher = client(direct());
  await watcher.join(room, { name: 'watcher' });
  const c = client(viaRelay(), { queueLimit: 3 });
  await c.join(room, { name: 'traveller' });
  await c.publish(room, 'online');

  relay.refusing = true;
  relay.cut();
  await until('reconnecting attempts', () => c.seen.reconnecting.length >= 4);
  for (const { attempt, delay } of c.seen.reconnecting) {
    const ceiling = Math.min(FAST.reconnectDelayMax, FAST.reconnectDelay * 2 ** (attempt - 1));
    assert.ok(delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay} ms in [0, ${ceiling})`);
  }
  assert.notEqual(c.readyState, HubSocket.OPEN);

  const queued = [c.publish(room, 'queued 1'), c.publish(room, 'queued 2', { key: unique('k') })];
  c.send(JSON.stringify({ op: 'publish', room, message: 'queued 3 (send)' }));
  assert.ok(c.bufferedAmount > 0, 'the queue counts in bufferedAmount');
  await assert.rejects(c.publish(room, 'one too many'), { code: 'queue_full' });
  assert.throws(() => c.send('ping'), { code: 'queue_full' });
  // Published by another member meanwhile: resumed after the reconnect.
  await watcher.publish(room, 'while away');

  relay.refusing = false;
  const answers = await Promise.all(queued);
  assert.deepEqual(answers.map((a) => a.type), ['published', 'published']);
  const want = ['online', 'while away', 'queued 1', 'queued 2', 'queued 3 (send)'];
  await waitTexts(watcher, room, want);
  assert.deepEqual(texts(watcher, room), want, 'the queue went out in order, the refused one not at all');
  await waitTexts(c, room, want);
  assert.deepEqual(texts(c, room), want, 'the traveller missed nothing and got nothing twice');
  const rejoin = c.seen.joined.at(-1);
  assert.equal(rejoin.recovered, true);
  assert.deepEqual(c.seen.gap, []);
});

test('no pong within the heartbeat timeout: the client drops the connection, reconnects and resumes', async () => {
  const room = unique('room');
  const watcher = client(direct());
  await watcher.join(room, { name: 'watcher' });
  const c = client(viaRelay(), { heartbeatInterval: 200, heartbeatTimeout: 600 });
  await c.join(room, { name: 'stalled' });
  const accepted = relay.accepted;

  relay.stall();
  await watcher.publish(room, 'sent into the void');
  await until('the dead connection is dropped', () => c.seen.close.length > 0, 10_000);
  assert.deepEqual(c.seen.close[0], { code: 4000, reason: 'heartbeat timeout', wasClean: false, willReconnect: true });
  await waitTexts(c, room, ['sent into the void']);
  assert.ok(relay.accepted > accepted, 'a new connection');
  // The hub still held the stalled connection under the same name: the
  // rejoin is tried again until it is free, or was accepted at once.
  for (const e of c.seen.huberror) assert.equal(e.retrying, true, JSON.stringify(e));
  assert.equal(c.seen.joined.at(-1).recovered, true);
  assert.deepEqual(texts(c, room), ['sent into the void']);
});

test('after the hub restarts in memory, the rejoin says what was lost (gap) and goes on live', async () => {
  const room = unique('room');
  const c = client(direct());
  const joined = await c.join(room, { name: 'memory' });
  await c.publish(room, 'before');
  await waitTexts(c, room, ['before']);

  await memoryHub.stop('SIGTERM');
  await until('disconnected', () => c.state === 'reconnecting');
  await memoryHub.startReady();
  await until('a gap event', () => c.seen.gap.length === 1, 15_000);
  const gap = c.seen.gap[0];
  assert.equal(gap.room, room);
  assert.deepEqual(gap.since, { epoch: joined.epoch, offset: joined.offset + 1 });
  assert.notEqual(gap.epoch, joined.epoch, 'a restarted hub has new epochs');
  assert.equal(c.seen.joined.at(-1).recovered, false);
  await waitState(c, 'open');
  await c.publish(room, 'after');
  await waitTexts(c, room, ['after']);
  assert.deepEqual(texts(c, room), ['before', 'after']);
});

test('after a hub on Redis restarts, what was published meanwhile is resumed, in order and once', async () => {
  const redis = await startRedis(dir);
  redisHub = new HubProcess(['--engine', 'redis', '--redis-url', `redis://127.0.0.1:${redis.port}`, '--api-key-file', KEY_FILE]);
  await redisHub.startReady();
  const redisRelay = new Relay([redisHub.port]);
  await redisRelay.start();
  try {
    const room = unique('room');
    const c = client(`ws://127.0.0.1:${redisRelay.port}/ws`);
    await c.join(room, { name: 'resumer' });
    await c.publish(room, 'm0');
    await waitTexts(c, room, ['m0']);

    // Away while the hub restarts and the messages are published.
    redisRelay.refusing = true;
    await redisHub.stop('SIGTERM');
    await until('disconnected', () => c.state === 'reconnecting');
    await redisHub.startReady();
    const missed = ['m1', 'm2', 'm3'];
    for (const message of missed) await apiPublish(redisHub.base, API_KEY, { room, message });
    redisRelay.refusing = false;

    await waitTexts(c, room, missed, 15_000);
    assert.deepEqual(texts(c, room), ['m0', ...missed]);
    assert.equal(c.seen.joined.at(-1).recovered, true);
    assert.deepEqual(c.seen.gap, []);
    await c.publish(room, 'm4');
    await waitTexts(c, room, ['m4']);
    assert.deepEqual(texts(c, room), ['m0', ...missed, 'm4']);
  } finally {
    await redisRelay.stop();
  }
});

test('close() on purpose: no reconnect, pending and later requests reject with closed', async () => {
  const room = unique('room');
  const own = new Relay([memoryHub.port]); // counts this client's connections only
  await own.start();
  try {
    const c = client(`ws://127.0.0.1:${own.port}/ws`);
    await c.join(room, { name: 'leaver' });
    // A publish that waits in the offline queue when close() comes.
    own.refusing = true;
    own.cut();
    await until('disconnected', () => c.state !== 'open');
    const queued = c.publish(room, 'never sent');
    c.close(1000, 'bye');
    await assert.rejects(queued, { code: 'closed' });
    await waitState(c, 'closed');
    assert.equal(c.seen.close.at(-1).willReconnect, false);
    own.refusing = false;
    const accepted = own.accepted;
    const states = c.seen.statechange.length;
    // With reconnect delays under 400 ms, a reconnect would have come by now.
    await sleep(1500);
    assert.equal(own.accepted, accepted, 'no new connection');
    assert.equal(c.seen.statechange.length, states, 'no state change after closed');
    assert.equal(c.readyState, HubSocket.CLOSED);
    assert.throws(() => c.send('ping'), { code: 'closed' });
    await assert.rejects(c.publish(room, 'late'), { code: 'closed' });
    await assert.rejects(c.join(room), { code: 'closed' });
    // connect() starts again, and joins the rooms it had.
    const joins = c.seen.joined.length;
    c.connect();
    await waitState(c, 'open');
    await until('rejoined', () => c.seen.joined.length === joins + 1);
    assert.equal((await c.publish(room, 'back')).type, 'published');
    assert.equal(own.accepted, accepted + 1);
  } finally {
    await own.stop();
  }
});

test('the defaults are documented ones', () => {
  assert.deepEqual({ ...DEFAULTS }, {
    reconnect: true, reconnectDelay: 500, reconnectDelayMax: 30000, heartbeatInterval: 10000,
    heartbeatTimeout: 20000, requestTimeout: 10000, queueLimit: 100,
  });
});
