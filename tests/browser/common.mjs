// What the browser tests share: the wshub binary under test, how Chromium
// is started, a free port, child processes (a hub, redis-server), and a
// TCP relay that can turn connections away or stall them.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { spawn } from 'node:child_process';

// WSHUB_BIN: the wshub binary (run.sh passes target/release/wshub).
export const WSHUB_BIN = process.env.WSHUB_BIN;
if (!WSHUB_BIN) {
  throw new Error('WSHUB_BIN is not set: point it at the wshub binary, e.g. WSHUB_BIN=target/release/wshub');
}
try {
  fs.accessSync(WSHUB_BIN, fs.constants.X_OK);
} catch {
  throw new Error(`WSHUB_BIN=${WSHUB_BIN} is not an executable file`);
}

// Debian's Chromium (tests/browser/setup.sh installs it), or CHROMIUM_BIN.
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// Headless, and quiet on this machine's closed network (no background
// fetches, which it refuses); playwright gives each launch a fresh
// temporary --user-data-dir of its own.
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// A TCP port free on 127.0.0.1 now.
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` every 100 ms until it returns true; throws "`what` within
// N ms" after `timeoutMs`.
export async function until(what, probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

// Every process started with start(), killed when the test process exits.
export const children = [];
export function killAll() {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', killAll);

// Spawns a child whose output is kept (the last 8 KB, in `child.log`) for
// failure messages; `child.exited` resolves with {code, sig}.
export function start(bin, args) {
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

// SIGTERM to every child still running, SIGKILL to those still there 5 s later.
export async function stopAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([child.exited, sleep(5000)]);
      child.kill('SIGKILL');
    }
  }
}

// ---- redis-server ----------------------------------------------------------

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

// A redis-server on a free port with no persistence, its files in `dir`;
// resolves with {child, port} once it answers PING.
export async function startRedis(dir) {
  const port = await freePort();
  const child = start(process.env.REDIS_SERVER_BIN || 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir,
  ]);
  await until('redis-server answers PING', async () => {
    if (child.exitCode !== null) {
      throw new Error(`redis-server exited:\n${child.log}`);
    }
    return (await redisCommand(port, 'PING')) === '+PONG';
  }).catch((e) => {
    throw new Error(`${e.message}; is redis-server installed (Debian: apt-get install redis-server)?\n${child.log}`);
  });
  return { child, port };
}

// ---- a hub process -----------------------------------------------------------

// `wshub serve --listen 127.0.0.1:<port> ...args`, on one port for its
// life, so that it can be stopped and started again where its clients
// reconnect.
export class HubProcess {
  constructor(args = []) {
    this.args = args;
    this.port = 0;
    this.child = null;
    this.log = '';          // the output of every run, the last 8 KB
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

  start() {
    const child = start(WSHUB_BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, ...this.args]);
    const keep = (b) => { this.log = (this.log + b.toString()).slice(-8000); };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.child = child;
    return child;
  }

  // Start (on a free port the first time) and wait for GET /readyz = 200
  // (bounded). Retries the start if the child exits early, e.g. while the
  // port is still being released.
  async startReady(timeoutMs = 20_000) {
    if (!this.port) this.port = await freePort();
    const deadline = Date.now() + timeoutMs;
    let child = this.start();
    let exited = null;
    child.exited.then((e) => { exited = e; });
    while (Date.now() < deadline) {
      if (exited) {
        await sleep(300);
        child = this.start();
        exited = null;
        child.exited.then((e) => { exited = e; });
        continue;
      }
      try {
        const res = await fetch(`${this.base}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch { /* not up yet */ }
      await sleep(100);
    }
    throw new Error(`hub did not answer GET /readyz with 200 within ${timeoutMs} ms\n--- hub output ---\n${this.log}`);
  }

  async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const done = await Promise.race([child.exited, sleep(timeoutMs).then(() => null)]);
    if (!done) {
      child.kill('SIGKILL');
      await Promise.race([child.exited, sleep(2000)]);
    }
  }
}

// POST /api/publish on a hub started with --api-key-file holding `key`.
export async function apiPublish(base, key, body) {
  const res = await fetch(`${base}/api/publish`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /api/publish: ${res.status} ${text}`);
  return JSON.parse(text);
}

// ---- a TCP relay -------------------------------------------------------------

// Forwards each new TCP connection to the first backend (a port on
// 127.0.0.1) that accepts it, bytes both ways, until either side closes.
// While `refusing`, new connections are closed at once, as a balancer
// with no healthy backend would. stall() stops forwarding on the
// connections open now without closing them: a link gone dead.
export class Relay {
  constructor(backends) {
    this.backends = backends; // ports, in order of preference
    this.refusing = false;
    this.server = null;
    this.port = 0;
    this.sockets = new Set();
    this.upstreams = new Map(); // open connection to a backend -> its port
    this.pairs = new Set();     // {client, upstream} forwarding now
    this.accepted = 0;          // connections forwarded, all told
  }

  async start() {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
  }

  get base() { return `http://127.0.0.1:${this.port}`; }

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
        this.accepted += 1;
        this.sockets.add(upstream);
        this.upstreams.set(upstream, this.backends[i]);
        const pair = { client, upstream };
        this.pairs.add(pair);
        upstream.on('close', () => {
          this.sockets.delete(upstream);
          this.upstreams.delete(upstream);
          this.pairs.delete(pair);
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
  }

  // The backends that have connections open now.
  openOn() { return [...new Set(this.upstreams.values())]; }

  // Stops forwarding on every connection open now, both ways, and leaves
  // them open: neither end is told anything.
  stall() {
    for (const { client, upstream } of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    this.pairs.clear();
  }

  // Closes every connection open now (new ones are still accepted unless
  // `refusing`).
  cut() {
    for (const socket of this.sockets) socket.destroy();
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve());
  }
}

// ---- test scaffolding --------------------------------------------------------

// Kills every child and exits 1 after `ms`, whatever happens; clear it in
// `after`.
export function watchdog(name, ms) {
  const timer = setTimeout(() => {
    console.error(`${name}: watchdog fired after ${ms / 1000} s, aborting`);
    killAll();
    process.exit(1);
  }, ms);
  timer.unref();
  return timer;
}

// A new temporary directory, removed when the test process exits.
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// `step(name, fn)`: tests that run in order and share their state; once
// one fails the later ones are skipped instead of piling up timeouts, and
// `diagnose(t)` adds what helps to read the failure.
export function stepper(timeout, diagnose) {
  let failed = false;
  return (name, fn) => test(name, { timeout }, async (t) => {
    if (failed) { t.skip('an earlier step failed'); return; }
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      try { await diagnose(t); } catch { /* nothing more to tell */ }
      throw e;
    }
  });
}
