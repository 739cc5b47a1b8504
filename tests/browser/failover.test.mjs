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
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  WSHUB_BIN, CHROMIUM, CHROMIUM_ARGS, freePort, start, startRedis, stepper, stopAll, tempDir, until, watchdog,
  Relay,
} from './common.mjs';

const ROOM = 'failover-room';
const STEP_TIMEOUT = 45_000;
const API_KEY = 'failover-test-key-0123456789abcdef';
const dir = tempDir('wshub-failover-');
const KEY_FILE = path.join(dir, 'api.key');
fs.writeFileSync(KEY_FILE, API_KEY);

// Hard stop well under two minutes, whatever happens.
const stopWatch = watchdog('failover.test.mjs', 110_000);

const redis = { child: null, port: 0 };

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

// Each new connection goes to the first node that accepts it (common.mjs).
let balancer;

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
  Object.assign(redis, await startRedis(dir));
  await startNode();
  await startNode();
  balancer = new Relay(nodes.map((n) => n.port));
  await balancer.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
});

after(async () => {
  try { await browser?.close(); } catch { /* already gone */ }
  await balancer?.stop();
  await stopAll();
  clearTimeout(stopWatch);
});

const step = stepper(STEP_TIMEOUT, async (t) => {
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
});

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
