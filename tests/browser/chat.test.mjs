// End-to-end test of the chat page served by `wshub serve`, in headless Chromium.
//
//   WSHUB_BIN=target/debug/wshub node --test tests/browser/chat.test.mjs
//
// Steps run in order and share one hub and one browser; once a step fails the
// later ones are skipped instead of piling up timeouts.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, HubProcess, sleep, stepper, watchdog } from './common.mjs';

// TEST_WSHUB_COMPRESSION=1: run the hub with --compression and check that the
// browser's own permessage-deflate is negotiated and carries messages.
const COMPRESSION = process.env.TEST_WSHUB_COMPRESSION === '1';
const ROOM = 'it-room';
const STEP_TIMEOUT = 45_000;

// Hard stop well under two minutes, whatever happens.
const stopWatch = watchdog('chat.test.mjs', 110_000);

// ---- the hub child process -------------------------------------------------

const hub = new HubProcess(COMPRESSION ? ['--compression'] : []);

// ---- browser helpers -------------------------------------------------------

let browser;
const pages = {};           // alice, bob
const pageErrors = [];      // uncaught errors and dialogs (an alert would mean HTML injection)

async function openChat(who) {
  const context = await browser.newContext();   // an independent session each
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => pageErrors.push(`${who}: pageerror: ${e.message}`));
  page.on('dialog', async (d) => { pageErrors.push(`${who}: dialog: ${d.message()}`); await d.dismiss(); });
  await page.goto(`${hub.base}/`);
  return page;
}

const readyState = (page) => page.evaluate(() => document.body.dataset.readyState);

// Wait until data-ready-state equals `want` (or, with negate, differs from it).
function waitReadyState(page, want, timeout, negate = false) {
  return page.waitForFunction(
    ([w, neg]) => (document.body.dataset.readyState === w) !== neg,
    [want, negate], { timeout, polling: 50 },
  );
}
const waitOpen = (page, timeout = 10_000) => waitReadyState(page, '1', timeout);
const waitNotOpen = (page, timeout = 10_000) => waitReadyState(page, '1', timeout, true);
const waitJoined = (page, room, timeout = 10_000) =>
  page.waitForFunction((r) => document.body.dataset.room === r, room, { timeout, polling: 50 });

async function waitMessage(page, text, from, timeout = 10_000) {
  const li = page.locator('#messages li.msg', { hasText: text });
  await li.first().waitFor({ state: 'visible', timeout });
  assert.equal(await li.count(), 1, `"${text}" was delivered once`);
  const content = await li.first().textContent();
  assert.ok(content.includes(from), `message "${text}" shows its sender ${from}: ${content}`);
}

const unique = (tag) => `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

// ---- lifecycle -------------------------------------------------------------

before(async () => {
  await hub.startReady();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
});

after(async () => {
  try { await browser?.close(); } catch { /* already gone */ }
  await hub.stop('SIGTERM', 5000);
  clearTimeout(stopWatch);
});

const step = stepper(STEP_TIMEOUT, async (t) => {
  for (const [who, page] of Object.entries(pages)) {
    try {
      const state = await page.evaluate(() => ({
        readyState: document.body.dataset.readyState,
        room: document.body.dataset.room,
        status: document.getElementById('status').textContent,
        items: [...document.querySelectorAll('#messages li')].slice(-10).map((li) => `${li.className}: ${li.textContent}`),
      }));
      t.diagnostic(`${who}: ${JSON.stringify(state)}`);
    } catch { /* page gone */ }
  }
  t.diagnostic(`hub output (tail):\n${hub.log.slice(-2000)}`);
});

// ---- the steps -------------------------------------------------------------

step('a. two sessions join the same room', async () => {
  pages.alice = await openChat('alice');
  pages.bob = await openChat('bob');

  const { alice, bob } = pages;
  await alice.fill('#nick', 'alice');
  await alice.fill('#room', ROOM);
  await bob.fill('#nick', 'bob');
  await bob.fill('#room', ROOM);
  await Promise.all([waitOpen(alice), waitOpen(bob)]);
  await alice.click('#join');          // by button
  await bob.press('#room', 'Enter');   // by Enter
  await Promise.all([waitJoined(alice, ROOM), waitJoined(bob, ROOM)]);

  for (const page of [alice, bob]) {
    assert.match(await page.textContent('#status'), /OPEN 1/);
    assert.equal(await readyState(page), '1');
  }
  // alice learns that bob joined after her
  await alice.locator('#messages li.notice', { hasText: 'bob' }).first().waitFor({ timeout: 10_000 });
});

step('b. a message reaches both pages', async () => {
  const { alice, bob } = pages;
  const text = unique('hello from alice');
  await alice.fill('#input', text);
  await alice.press('#input', 'Enter');
  await Promise.all([waitMessage(alice, text, 'alice'), waitMessage(bob, text, 'alice')]);
  assert.equal(await alice.inputValue('#input'), '', 'the input is cleared after sending');
  // Own messages are marked by the connection id the hub gave (not by name).
  const mine = (page) => page.locator('#messages li.msg.mine', { hasText: text }).count();
  assert.equal(await mine(alice), 1, "alice's own message is marked hers");
  assert.equal(await mine(bob), 0, "alice's message is not marked bob's");
});

step(`b2. permessage-deflate is ${COMPRESSION ? 'negotiated and carries a long message' : 'not negotiated without --compression'}`, async () => {
  const { alice, bob } = pages;
  for (const page of [alice, bob]) {
    const extensions = await page.evaluate(() => document.body.dataset.extensions);
    if (COMPRESSION) {
      assert.match(extensions, /^permessage-deflate/, `negotiated: ${extensions}`);
      assert.match(await page.textContent('#status'), /compressed/);
    } else {
      assert.equal(extensions, '', 'nothing negotiated');
    }
  }
  // Above the server's 1 KiB threshold, so with compression the hub sends it
  // compressed to both pages (compressed once for both), and Chromium sent
  // it compressed too.
  const text = unique('long') + ' ' + 'the quick brown fox jumps over the lazy dog '.repeat(60);
  await alice.fill('#input', text);
  await alice.press('#input', 'Enter');
  await Promise.all([waitMessage(alice, text, 'alice'), waitMessage(bob, text, 'alice')]);
});

step('c. server strings are rendered as text, never as HTML', async () => {
  const { alice, bob } = pages;
  const marker = unique('xss');
  const payload = `${marker} <b>x</b><img src=x onerror=alert(1)>`;
  await bob.fill('#input', payload);
  await bob.click('#send');
  await Promise.all([waitMessage(alice, payload, 'bob'), waitMessage(bob, payload, 'bob')]);
  for (const page of [alice, bob]) {
    assert.equal(await page.locator('#messages b').count(), 0, 'no <b> element was created');
    assert.equal(await page.locator('#messages img').count(), 0, 'no <img> element was created');
  }
  await sleep(200); // give a stray onerror handler the chance to fire, then check
  assert.deepEqual(pageErrors, []);
});

step('d. pages reconnect and re-join after a hub restart', async () => {
  const { alice, bob } = pages;
  await hub.stop('SIGTERM');
  await Promise.all([waitNotOpen(alice), waitNotOpen(bob)]);

  await hub.startReady();
  await Promise.all([waitOpen(alice, 30_000), waitOpen(bob, 30_000)]);
  await Promise.all([waitJoined(alice, ROOM), waitJoined(bob, ROOM)]);

  const text = unique('bob is back');
  await bob.fill('#input', text);
  await bob.press('#input', 'Enter');
  await Promise.all([waitMessage(alice, text, 'bob'), waitMessage(bob, text, 'bob')]);
});

step('e. Close closes with intent and does not reconnect', async () => {
  const { alice, bob } = pages;
  await alice.click('#close');
  await waitReadyState(alice, '3', 5000);
  assert.match(await alice.textContent('#status'), /CLOSED 3/);

  // bob is told that alice went away
  await bob.locator('#messages li.notice', { hasText: 'alice left' }).first().waitFor({ timeout: 10_000 });

  // alice stays closed: sample for 3 s
  const until = Date.now() + 3000;
  while (Date.now() < until) {
    assert.equal(await readyState(alice), '3', 'the page reconnected after Close');
    await sleep(100);
  }
  assert.equal(await readyState(bob), '1', 'bob is still connected');
  assert.equal(await alice.isEnabled('#connect'), true, 'Connect is offered after Close');
  assert.deepEqual(pageErrors, []);
});
