// Failover of the chat page between two hub nodes on Redis (issue 14 §4), in
// headless Chromium:
//
//   WSHUB_BIN=target/release/wshub node --test tests/browser/failover.test.mjs
//
// The test starts a redis-server on a free port, two `wshub serve --engine
// redis` nodes on it, and a small TCP load balancer (below) in front of them
// that sends each new connection to the first node that accepts it. The page
// joins a room through the balancer; the node it is on is killed (SIGKILL);
// while the page is away messages are published through the HTTP API of the
// other node; the page comes back through the balancer to that node, resumes
// with `since`, and must show the messages it missed, in order, once, with
// no "messages may be missing" marker; then chat goes on live.
//
// Steps run in order and share the nodes and the browser; once a step fails
// the later ones are skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';
import { WSHUB_BIN, CHROMIUM, CHROMIUM_ARGS, freePort } from './common.mjs';

const REDIS_SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';
const ROOM = 'failover-room';
const STEP_TIMEOUT = 45_000;
const API_KEY = 'failover-test-key-0123456789abcdef';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-failover-'));
const KEY_FILE = path.join(dir, 'api.key');
fs.writeFileSync(KEY_FILE, API_KEY);

const children = [];        // every process started here, killed at exit
const killAll = () => {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
};
process.on('exit', () => {
  killAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

// Hard stop well under two minutes, whatever happens.
const watchdog = setTimeout(() => {
  console.error('failover.test.mjs: watchdog fired after 110 s, aborting');
  killAll();
  process.exit(1);
}, 110_000);
watchdog.unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Spawns a child whose output is kept (the last 8 KB) for failure messages.
function start(bin, args) {
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  child.log = '';
  const keep = (b) => { child.log = (child.log + b.toString()).slice(-8000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  child.once('error', (e) => { keep(`spawn error: ${e.message}\n`); });
  children.push(child);
  return child;
}

async function until(what, probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

// ---- redis-server ----------------------------------------------------------

const redis = { child: null, port: 0 };

// One RESP command on a new connection; the first line of the reply.
function redisCommand(port, command) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1000, () => { socket.destroy(); reject(new Error('timeout')); });
    socket.on('error', reject);
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (b) => { socket.destroy(); resolve(b.toString().split('\r\n')[0]); });
  });
}

async function startRedis() {
  redis.port = await freePort();
  redis.child = start(REDIS_SERVER, [
    '--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir,
  ]);
  await until('redis-server answers PING', async () => {
    if (redis.child.exitCode !== null) {
      throw new Error(`redis-server exited:\n${redis.child.log}`);
    }
    return (await redisCommand(redis.port, 'PING')) === '+PONG';
  }).catch((e) => {
    throw new Error(`${e.message}; is redis-server installed (Debian: apt-get install redis-server)?\n${redis.child.log}`);
  });
}

// ---- the hub nodes ---------------------------------------------------------

const nodes = [];           // {child, port, base}

async function startNode() {
  const port = await freePort();
  const child = start(WSHUB_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`,
    '--engine', 'redis', '--redis-url', `redis://127.0.0.1:${redis.port}`,
    '--api-key-file', KEY_FILE,
  ]);
  const node = { child, port, base: `http://127.0.0.1:${port}` };
  // Ready: listening, and its subscriber connected to Redis.
  await until(`node on ${port} answers GET /readyz with 200`, async () => {
    if (child.exitCode !== null) throw new Error(`node exited:\n${child.log}`);
    const res = await fetch(`${node.base}/readyz`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  });
  nodes.push(node);
  return node;
}

async function api(node, method, route, body) {
  const res = await fetch(`${node.base}${route}`, {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${method} ${route}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const publish = (node, message) => api(node, 'POST', '/api/publish', { room: ROOM, message });

// ---- the load balancer -----------------------------------------------------

// Forwards each new TCP connection to the first backend that accepts it,
// bytes both ways, until either side closes. While `refusing`, new
// connections are closed at once, as a balancer with no healthy backend
// would.
const balancer = {
  server: null,
  port: 0,
  backends: [],             // ports, in order of preference
  refusing: false,
  sockets: new Set(),
  upstreams: new Map(),     // open connection to a backend -> its port

  async start(backends) {
    this.backends = backends;
    this.server = net.createServer((client) => this.accept(client));
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
  },

  get base() { return `http://127.0.0.1:${this.port}`; },

  accept(client) {
    if (this.refusing) { client.destroy(); return; }
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    const tryBackend = (i) => {
      if (i >= this.backends.length || client.destroyed) { client.destroy(); return; }
      const upstream = net.connect(this.backends[i], '127.0.0.1');
      upstream.once('error', () => {
        if (!upstream.connected) tryBackend(i + 1);
      });
      upstream.once('connect', () => {
        upstream.connected = true;
        this.sockets.add(upstream);
        this.upstreams.set(upstream, this.backends[i]);
        upstream.on('close', () => {
          this.sockets.delete(upstream);
          this.upstreams.delete(upstream);
          client.destroy();
        });
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  },

  // The backends that have connections open now.
  openOn() { return [...new Set(this.upstreams.values())]; },

  async stop() {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve());
  },
};

// ---- the page --------------------------------------------------------------

let browser;
let page;
const pageErrors = [];
const unique = (tag) => `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const RUN = unique('run');

const waitJoined = (timeout = 10_000) =>
  page.waitForFunction((r) => document.body.dataset.room === r, ROOM, { timeout, polling: 50 });

// The texts of the page's messages of this run, in the order shown.
const shownTexts = () => page.$$eval('#messages li.msg .text', (els) => els.map((e) => e.textContent))
  .then((texts) => texts.filter((t) => t.startsWith(RUN)));

async function waitShown(texts, timeout = 15_000) {
  await page.waitForFunction(
    (want) => {
      const shown = [...document.querySelectorAll('#messages li.msg .text')].map((e) => e.textContent);
      return want.every((t) => shown.includes(t));
    },
    texts, { timeout, polling: 50 },
  );
}

// ---- lifecycle -------------------------------------------------------------

before(async () => {
  await startRedis();
  await startNode();
  await startNode();
  await balancer.start(nodes.map((n) => n.port));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
});

after(async () => {
  try { await browser?.close(); } catch { /* already gone */ }
  await balancer.stop();
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([child.exited, sleep(5000)]);
      child.kill('SIGKILL');
    }
  }
  clearTimeout(watchdog);
});

let failed = false;
function step(name, fn) {
  test(name, { timeout: STEP_TIMEOUT }, async (t) => {
    if (failed) { t.skip('an earlier step failed'); return; }
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      try {
        const state = await page.evaluate(() => ({
          readyState: document.body.dataset.readyState,
          room: document.body.dataset.room,
          status: document.getElementById('status').textContent,
          items: [...document.querySelectorAll('#messages li')].slice(-15).map((li) => `${li.className}: ${li.textContent}`),
        }));
        t.diagnostic(`page: ${JSON.stringify(state)}`);
      } catch { /* page gone */ }
      for (const node of nodes) t.diagnostic(`node ${node.port} output (tail):\n${node.child.log.slice(-2000)}`);
      throw e;
    }
  });
}

// ---- the steps -------------------------------------------------------------

let home;                   // the node the page is on at first
let other;                  // the one it fails over to
const sent = [];            // texts the page must show, in order

step('a. the page joins a room through the balancer and gets messages from either node', async () => {
  const context = await browser.newContext();
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('dialog', async (d) => { pageErrors.push(`dialog: ${d.message()}`); await d.dismiss(); });
  await page.goto(`${balancer.base}/`);
  await page.fill('#nick', 'carol');
  await page.fill('#room', ROOM);
  await page.waitForFunction(() => document.body.dataset.readyState === '1', null, { polling: 50 });
  await page.click('#join');
  await waitJoined();

  // The page's connections (its WebSocket, and its page load if still
  // open) are on one node: the one to kill.
  await until('the page\'s connections are on one node', async () => balancer.openOn().length === 1, 5000);
  const [port] = balancer.openOn();
  home = nodes.find((n) => n.port === port);
  other = nodes.find((n) => n.port !== port);

  for (const node of [home, other]) {
    const text = `${RUN} before ${node.port}`;
    await publish(node, text);
    sent.push(text);
  }
  await waitShown(sent);
});

step('b. its node is killed; what is published meanwhile is shown once it is back, in order', async () => {
  // The page must stay away while the messages are published: the
  // balancer turns new connections away until they are.
  balancer.refusing = true;
  home.child.kill('SIGKILL');
  await home.child.exited;
  await page.waitForFunction(() => document.body.dataset.readyState !== '1', null, { timeout: 10_000, polling: 50 });

  const missed = [];
  for (let i = 1; i <= 5; i++) {
    const text = `${RUN} missed ${i}`;
    const answer = await publish(other, text);
    assert.equal(answer.duplicate, false);
    missed.push(text);
  }
  sent.push(...missed);
  balancer.refusing = false;

  await waitJoined(30_000);
  await waitShown(missed);
  assert.deepEqual(await shownTexts(), sent, 'every message shown once, in order');
  assert.equal(await page.locator('#messages li.gap').count(), 0, 'no "messages may be missing" marker');
  assert.deepEqual(balancer.openOn(), [other.port], 'the page is on the surviving node');
});

step('c. live chat goes on on the other node', async () => {
  const mine = `${RUN} typed after the failover`;
  await page.fill('#input', mine);
  await page.press('#input', 'Enter');
  sent.push(mine);
  const theirs = `${RUN} published after the failover`;
  await waitShown([mine]);
  await publish(other, theirs);
  sent.push(theirs);
  await waitShown([theirs]);
  assert.deepEqual(await shownTexts(), sent, 'every message shown once, in order');
  // The page's own message is in the room's history in Redis.
  const history = await api(other, 'GET', `/api/rooms/${ROOM}/history`);
  assert.ok(history.messages.some((m) => m.message === mine), JSON.stringify(history));
  assert.equal(await page.locator('#messages li.gap').count(), 0);
  assert.deepEqual(pageErrors, []);
});
