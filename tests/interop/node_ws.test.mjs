// Interop: `wshub serve` against the npm `ws` client (a peer we did not write).
//   WSHUB_BIN=target/debug/wshub node --test node_ws.test.mjs
// WSHUB_TLS=1 with WSHUB_TLS_DIR=DIR (holding ca.pem, and cert.pem and
// key.pem for 127.0.0.1): the server runs with --tls-cert/--tls-key, and
// every test goes over wss:// and https://, trusting ca.pem only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { withTimeout } from './common.mjs';

const WSHUB_BIN = process.env.WSHUB_BIN;
// TEST_WSHUB_COMPRESSION=1: the server runs with --compression, so the ws client's
// own permessage-deflate offer (on by default in ws) is accepted and every
// test below also runs compressed.
const COMPRESSION = process.env.TEST_WSHUB_COMPRESSION === '1';
const TLS_DIR = process.env.WSHUB_TLS === '1' ? process.env.WSHUB_TLS_DIR : undefined;
const CA = TLS_DIR ? readFileSync(join(TLS_DIR, 'ca.pem')) : undefined;
const TLS_FLAGS = TLS_DIR
  ? ['--tls-cert', join(TLS_DIR, 'cert.pem'), '--tls-key', join(TLS_DIR, 'key.pem')]
  : [];
const STARTUP_MS = 15_000;
const WAIT_MS = 10_000;

let server; // the wshub child process
let port;
let serverLog = '';


function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(WSHUB_BIN, ['serve', '--listen', '127.0.0.1:0', ...(COMPRESSION ? ['--compression'] : []), ...TLS_FLAGS], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = child;
    const timer = setTimeout(() => reject(new Error(
      `wshub printed no 'listening on' line within ${STARTUP_MS} ms; output:\n${serverLog}`)), STARTUP_MS);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`wshub exited (code ${code}, signal ${signal}) before listening; output:\n${serverLog}`));
    });
    child.stderr.on('data', (d) => { if (serverLog.length < 64 * 1024) serverLog += d; });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (serverLog.length < 64 * 1024) serverLog += line + '\n';
      const m = /listening on (https?):\/\/\S+:(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        if (m[1] !== (TLS_DIR ? 'https' : 'http')) reject(new Error(`unexpected scheme: ${line}`));
        resolve(Number(m[2]));
      }
    });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  try {
    await withTimeout(exited, 5000, 'wshub to exit after SIGTERM');
  } catch {
    server.kill('SIGKILL');
    await withTimeout(exited, 5000, 'wshub to exit after SIGKILL').catch(() => {});
  }
}

/** A ws client whose incoming messages queue up until a test asks for them. */
class Client {
  constructor(path) {
    const scheme = TLS_DIR ? 'wss' : 'ws';
    this.ws = new WebSocket(`${scheme}://127.0.0.1:${port}${path}`, { maxPayload: 32 << 20, ca: CA });
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('error', (err) => { this.error = err; });
    this.ws.on('message', (data, isBinary) => {
      const msg = { data, isBinary };
      const waiter = this.waiters.shift();
      if (waiter) waiter(msg); else this.queue.push(msg);
    });
  }

  open() {
    return withTimeout(new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    }), WAIT_MS, 'the WebSocket handshake');
  }

  next(what = 'a message') {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), WAIT_MS, what);
  }

  /** Next text message parsed as JSON (the hub's frames are all JSON but `pong`). */
  async nextJson(what) {
    const { data, isBinary } = await this.next(what);
    assert.equal(isBinary, false, `${what}: the hub sent a binary frame`);
    const text = data.toString('utf8');
    try {
      return JSON.parse(text);
    } catch {
      assert.fail(`${what}: not JSON: ${JSON.stringify(text)}`);
    }
  }

  /** Skip frames until one of `type` (presence notices may interleave). */
  async nextOfType(type, what = type) {
    for (let i = 0; i < 20; i++) {
      const m = await this.nextJson(what);
      if (m.type === type) return m;
      assert.notEqual(m.type, 'error', `${what}: got an error: ${JSON.stringify(m)}`);
    }
    assert.fail(`${what}: no '${type}' within 20 frames`);
  }

  sendJson(obj) { this.ws.send(JSON.stringify(obj)); }

  async close(code = 1000, reason = '') {
    this.ws.close(code, reason);
    return withTimeout(this.closed, WAIT_MS, 'the close handshake');
  }

  terminate() { this.ws.terminate(); }
}

// Never leave wshub behind: the test runner may be stopped by a timeout.
process.on('exit', () => { if (server && server.exitCode === null) server.kill('SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

before(async () => {
  assert.ok(WSHUB_BIN, 'set WSHUB_BIN to the wshub binary');
  port = await startServer();
});

after(async () => {
  await stopServer();
});

describe('/echo', () => {
  test('text, binary and 1 MiB messages echo unchanged with their type', { timeout: 60_000 }, async () => {
    const c = new Client('/echo');
    try {
      await c.open();

      const text = 'hello from ws ✓ — ünïcødé 🚀';
      c.ws.send(text);
      let m = await c.next('the text echo');
      assert.equal(m.isBinary, false, 'a text message came back as binary');
      assert.equal(m.data.toString('utf8'), text);

      c.ws.send('');
      m = await c.next('the empty text echo');
      assert.equal(m.isBinary, false);
      assert.equal(m.data.length, 0);

      const bin = randomBytes(100 * 1024);
      c.ws.send(bin, { binary: true });
      m = await c.next('the 100 KiB binary echo');
      assert.equal(m.isBinary, true, 'a binary message came back as text');
      assert.ok(Buffer.from(m.data).equals(bin), '100 KiB binary echo differs');

      const big = randomBytes(1024 * 1024);
      c.ws.send(big, { binary: true });
      m = await c.next('the 1 MiB binary echo');
      assert.equal(m.isBinary, true);
      assert.equal(m.data.length, big.length);
      assert.ok(Buffer.from(m.data).equals(big), '1 MiB binary echo differs');

      // A fragmented text message comes back as one message.
      c.ws.send('frag', { fin: false });
      c.ws.send('ment', { fin: false });
      c.ws.send('ed', { fin: true });
      m = await c.next('the fragmented echo');
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString('utf8'), 'fragmented');

      const closed = await c.close(1000, 'bye');
      assert.equal(closed.code, 1000, `close code ${closed.code} (reason ${JSON.stringify(closed.reason)})`);
    } finally {
      c.terminate();
    }
  });
});

describe(`permessage-deflate ${COMPRESSION ? 'on' : 'off'}`, () => {
  test('ws negotiates it exactly when the server has --compression, and messages survive it', { timeout: 60_000 }, async () => {
    const c = new Client('/echo');
    try {
      await c.open();
      if (COMPRESSION) {
        assert.match(c.ws.extensions, /^permessage-deflate/, `negotiated: ${JSON.stringify(c.ws.extensions)}`);
      } else {
        assert.equal(c.ws.extensions, '', 'nothing negotiated without --compression');
      }
      // Compressible text well above both thresholds (ws: 1 KiB, wshub: 1 KiB),
      // then a series of messages so that ws reuses its context between them.
      const line = 'the quick brown fox jumps over the lazy dog 0123456789\n';
      const texts = [line.repeat(20_000), ...Array.from({ length: 20 }, (_, i) => `${i} ${line.repeat(40 + i)}`)];
      for (const text of texts) c.ws.send(text);
      for (const [i, text] of texts.entries()) {
        const m = await c.next(`compressible echo ${i}`);
        assert.equal(m.isBinary, false);
        assert.equal(m.data.toString('utf8'), text, `echo ${i} differs`);
      }
      const closed = await c.close(1000, 'bye');
      assert.equal(closed.code, 1000);
    } finally {
      c.terminate();
    }
  });
});

describe('/ws hub', () => {
  test('join, publish, bad JSON, ping', { timeout: 60_000 }, async () => {
    const room = 'interop';
    const a = new Client('/ws');
    const b = new Client('/ws');
    try {
      await Promise.all([a.open(), b.open()]);
      const wa = await a.nextJson('welcome (a)');
      const wb = await b.nextJson('welcome (b)');
      for (const w of [wa, wb]) {
        assert.equal(w.type, 'welcome');
        assert.equal(typeof w.id, 'number');
      }
      assert.notEqual(wa.id, wb.id, 'two connections got the same id');

      a.sendJson({ op: 'join', room, name: 'alice', id: 1 });
      const ja = await a.nextJson('joined (a)');
      assert.equal(ja.type, 'joined', JSON.stringify(ja));
      assert.equal(ja.room, room);
      assert.equal(ja.name, 'alice');
      assert.equal(ja.id, 1);
      assert.ok(Array.isArray(ja.members) && ja.members.includes('alice'), JSON.stringify(ja));
      assert.equal(typeof ja.seq, 'number');

      b.sendJson({ op: 'join', room, name: 'bob', id: 'b-join' });
      const jb = await b.nextJson('joined (b)');
      assert.equal(jb.type, 'joined', JSON.stringify(jb));
      assert.equal(jb.id, 'b-join');
      assert.deepEqual([...jb.members].sort(), ['alice', 'bob']);
      assert.equal(jb.seq, ja.seq);
      const pa = await a.nextJson('presence of bob (a)');
      assert.equal(pa.type, 'presence', JSON.stringify(pa));
      assert.equal(pa.room, room);
      assert.equal(pa.event, 'join');
      assert.equal(pa.name, 'bob');

      let seq = ja.seq;
      const publish = async (sender, from, message) => {
        sender.sendJson({ op: 'publish', room, message });
        seq += 1;
        for (const [c, who] of [[a, 'a'], [b, 'b']]) {
          const m = await c.nextOfType('message', `message ${seq} (${who})`);
          assert.equal(m.room, room);
          assert.equal(m.from, from);
          assert.deepEqual(m.message, message);
          assert.equal(m.seq, seq, `seq should go up by 1: ${JSON.stringify(m)}`);
          assert.equal(typeof m.ts, 'number');
          assert.ok(Math.abs(m.ts - Date.now()) < 60_000, `ts is not ms since the epoch: ${m.ts}`);
        }
      };
      await publish(a, 'alice', 'hello from alice');
      await publish(a, 'alice', 'second');
      await publish(b, 'bob', { n: 1, nested: ['json', true, null] });

      // Malformed JSON: an error, and the connection stays usable.
      a.ws.send('{"op": "publish", "room": ');
      const err = await a.nextJson('the bad_json error');
      assert.equal(err.type, 'error', JSON.stringify(err));
      assert.equal(err.code, 'bad_json');
      assert.equal(typeof err.message, 'string');
      await publish(a, 'alice', 'still here');

      // Application heartbeat.
      a.ws.send('ping');
      const pong = await a.next('pong');
      assert.equal(pong.isBinary, false);
      assert.equal(pong.data.toString('utf8'), 'pong');

      const [ca, cb] = await Promise.all([a.close(1000), b.close(1000)]);
      assert.equal(ca.code, 1000);
      assert.equal(cb.code, 1000);
    } finally {
      a.terminate();
      b.terminate();
    }
  });
});

describe('plain HTTP', () => {
  const get = (path) => withTimeout(new Promise((resolve, reject) => {
    const req = (TLS_DIR ? https : http).get({ host: '127.0.0.1', port, path, agent: false, ca: CA }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
  }), WAIT_MS, `GET ${path}`);

  test('GET /echo without upgrade headers is 426', { timeout: 20_000 }, async () => {
    assert.equal(await get('/echo'), 426);
  });
  test('unknown path is 404', { timeout: 20_000 }, async () => {
    assert.equal(await get('/no-such-path'), 404);
  });
  test('GET /healthz is 200', { timeout: 20_000 }, async () => {
    assert.equal(await get('/healthz'), 200);
  });
});
