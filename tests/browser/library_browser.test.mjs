// The client library (/wshub.js) in headless Chromium, against a hub on
// Redis behind a TCP relay:
//
//   WSHUB_BIN=target/release/wshub node --test tests/browser/library_browser.test.mjs
//
// The page imports the module the hub serves and opens a HubSocket with
// short timings. The hub process is restarted while the relay keeps the
// page away and messages are published meanwhile: the page resumes them.
// Then the relay stops forwarding without closing anything: the heartbeat
// must notice, drop the connection, reconnect and resume.
//
// Steps run in order and share the hub and the page; once a step fails the
// later ones are skipped.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, HubProcess, Relay, apiPublish, startRedis, stepper, stopAll, tempDir, watchdog,
} from './common.mjs';

const STEP_TIMEOUT = 45_000;
const API_KEY = 'library-browser-key-0123456789abcdef';
const ROOM = `lib-${Date.now().toString(36)}`;
const dir = tempDir('wshub-library-browser-');
const KEY_FILE = path.join(dir, 'api.key');
fs.writeFileSync(KEY_FILE, API_KEY);
const stopWatch = watchdog('library_browser.test.mjs', 110_000);

let hub;
let relay;
let browser;
let page;
const pageErrors = [];
const publish = (message) => apiPublish(hub.base, API_KEY, { room: ROOM, message });

// What the page's HubSocket has told, kept in window.lib.
const lib = () => page.evaluate(() => window.lib);
const waitLib = (predicate, arg, timeout = 15_000) =>
  page.waitForFunction(predicate, arg, { timeout, polling: 50 });

before(async () => {
  const redis = await startRedis(dir);
  // A quick keepalive, so that the hub lets a stalled connection go (and
  // its member's name with it) within 2 s.
  hub = new HubProcess(['--engine', 'redis', '--redis-url', `redis://127.0.0.1:${redis.port}`,
    '--api-key-file', KEY_FILE, '--ping-interval', '1s', '--pong-timeout', '1s']);
  await hub.startReady();
  relay = new Relay([hub.port]);
  await relay.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
});

after(async () => {
  try { await browser?.close(); } catch { /* already gone */ }
  await relay?.stop();
  await stopAll();
  clearTimeout(stopWatch);
});

const step = stepper(STEP_TIMEOUT, async (t) => {
  t.diagnostic(`page: ${JSON.stringify(await lib())}`);
  t.diagnostic(`hub output (tail):\n${hub.log.slice(-2000)}`);
});

step('a. a page imports /wshub.js, joins and publishes through it', async () => {
  page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  // A page of the relay's origin (the chat page), so that the hub's Origin
  // check admits its WebSocket through the relay.
  await page.goto(`${relay.base}/`);
  const published = await page.evaluate(async ({ url, room }) => {
    const { HubSocket } = await import('/wshub.js');
    const log = { messages: [], closes: [], joined: [], gaps: [], reconnecting: 0 };
    window.lib = log;
    const c = new HubSocket(url, {
      heartbeatInterval: 300, heartbeatTimeout: 1000, reconnectDelay: 100, reconnectDelayMax: 1000,
    });
    window.client = c;
    c.addEventListener('message', (e) => log.messages.push(e.data.message));
    c.addEventListener('close', (e) => log.closes.push(e.detail));
    c.addEventListener('joined', (e) => log.joined.push({ recovered: e.detail.recovered, offset: e.detail.offset }));
    c.addEventListener('gap', (e) => log.gaps.push(e.detail));
    c.addEventListener('reconnecting', () => { log.reconnecting += 1; });
    await c.join(room, { name: 'browser' });
    return c.publish(room, 'm0');
  }, { url: `ws://127.0.0.1:${relay.port}/ws`, room: ROOM });
  assert.equal(published.type, 'published');
  assert.equal(published.duplicate, false);
  await waitLib(() => window.lib.messages.includes('m0'));
});

step('b. the hub process restarts; what is published meanwhile is resumed, in order and once', async () => {
  relay.refusing = true;      // keeps the page away until the messages are in
  await hub.stop('SIGTERM');
  // Each attempt the relay refuses meanwhile is a close event of its own
  // (1006), so there may be more than one by the time this looks.
  await waitLib(() => window.lib.closes.length >= 1 && window.client.state !== 'open');
  assert.equal((await lib()).closes[0].willReconnect, true);
  await hub.startReady();
  for (const m of ['m1', 'm2', 'm3']) await publish(m);
  relay.refusing = false;

  await waitLib(() => window.lib.messages.includes('m3'));
  const seen = await lib();
  assert.deepEqual(seen.messages, ['m0', 'm1', 'm2', 'm3']);
  assert.equal(seen.joined.at(-1).recovered, true, 'rejoined with since, every message recovered');
  assert.deepEqual(seen.gaps, []);
  assert.ok(seen.reconnecting >= 1);
});

step('c. a connection that stops carrying anything is dropped by the heartbeat, and the page resumes', async () => {
  const before = relay.accepted;
  const closesBefore = (await lib()).closes.length;
  relay.stall();              // no bytes either way, nothing closed
  for (const m of ['m4', 'm5']) await publish(m);
  // heartbeatTimeout is 1 s; the bound here is for a slow machine.
  await waitLib((n) => window.lib.closes.length > n, closesBefore, 20_000);
  const seen = await lib();
  assert.deepEqual(seen.closes[closesBefore], { code: 4000, reason: 'heartbeat timeout', wasClean: false, willReconnect: true });
  await waitLib(() => window.lib.messages.includes('m5'), undefined, 20_000);
  const after = await lib();
  assert.deepEqual(after.messages, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  assert.equal(after.joined.at(-1).recovered, true);
  assert.deepEqual(after.gaps, []);
  assert.ok(relay.accepted > before, 'a new connection through the relay');
  assert.equal(await page.evaluate(() => window.client.readyState), 1);
  assert.deepEqual(pageErrors, []);
});
