// The chat page over https, in headless Chromium: `wshub serve --tls-cert
// --tls-key` with a test CA made here by openssl, the server's key trusted
// through Chromium's --ignore-certificate-errors-spki-list flag; the page
// joins and chats over wss:// (a page on https may not open ws://), and a
// token in the page's URL names its member.
//
//   WSHUB_BIN=target/release/wshub node --test tests/browser/chat_tls.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const WSHUB_BIN = process.env.WSHUB_BIN;
if (!WSHUB_BIN) throw new Error('WSHUB_BIN is not set: point it at the wshub binary');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SECRET = 'a browser test secret of thirty-two bytes or more';

const watchdog = setTimeout(() => {
  console.error('chat_tls.test.mjs: watchdog fired after 90 s, aborting');
  hub?.kill('SIGKILL');
  process.exit(1);
}, 90_000);
watchdog.unref();

// ---- certificates, token ---------------------------------------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-browser-tls-'));
function openssl(...args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
function makeCertificates() {
  const f = (name) => path.join(dir, name);
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=wshub browser test CA', '-keyout', f('ca-key.pem'), '-out', f('ca.pem'));
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-subj', '/CN=localhost', '-keyout', f('key.pem'), '-out', f('server.csr'));
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'),
    '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f('cert.pem'));
  fs.writeFileSync(f('secret'), SECRET + '\n');
  // What --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the
  // server certificate's SubjectPublicKeyInfo.
  const spki = new crypto.X509Certificate(fs.readFileSync(f('cert.pem'))).publicKey
    .export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

const b64url = (data) => Buffer.from(data).toString('base64url');
function jwt(claims) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const signature = crypto.createHmac('sha256', SECRET).update(input).digest('base64url');
  return `${input}.${signature}`;
}

// ---- hub and browser -------------------------------------------------------

let hub;
let base;
let log = '';
let browser;
const pages = {};

function startHub() {
  return new Promise((resolve, reject) => {
    hub = spawn(WSHUB_BIN, ['serve', '--listen', '127.0.0.1:0',
      '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem'),
      '--jwt-hs256-secret-file', path.join(dir, 'secret')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b) => { log = (log + b.toString()).slice(-8000); };
    hub.stderr.on('data', keep);
    hub.stdout.on('data', (b) => {
      keep(b);
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      // localhost: the name the certificate is for.
      if (m) resolve(`https://localhost:${m[1]}`);
    });
    hub.once('exit', (code) => reject(new Error(`wshub exited (${code}) before listening:\n${log}`)));
    setTimeout(() => reject(new Error(`no listening line in 20 s:\n${log}`)), 20_000).unref();
  });
}

async function openChat(who, query = '') {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`${base}/${query}`);
  pages[who] = page;
  return page;
}

const waitOpen = (page) => page.waitForFunction(() => document.body.dataset.readyState === '1', null, { polling: 50 });
const waitJoined = (page, room) => page.waitForFunction((r) => document.body.dataset.room === r, room, { polling: 50 });
async function waitMessage(page, text, from) {
  const li = page.locator('#messages li.msg', { hasText: text });
  await li.first().waitFor({ state: 'visible' });
  const content = await li.first().textContent();
  assert.ok(content.includes(from), `"${text}" shows its sender ${from}: ${content}`);
  return content;
}

before(async () => {
  const spki = makeCertificates();
  base = await startHub();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      `--ignore-certificate-errors-spki-list=${spki}`],
    timeout: 30_000,
  });
});

after(async () => {
  try { await browser?.close(); } catch { /* gone */ }
  hub?.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
  clearTimeout(watchdog);
});

test('the page loads over https and chats over wss, its member named by the token of its URL', { timeout: 60_000 }, async () => {
  const room = `tls-${Date.now().toString(36)}`;
  const ada = await openChat('ada', `?token=${jwt({ sub: 'ada', exp: Math.floor(Date.now() / 1000) + 600 })}`);
  const eve = await openChat('eve');
  try {
    for (const page of [ada, eve]) {
      assert.equal(await page.evaluate(() => location.protocol), 'https:');
      await waitOpen(page);
    }
    // Eve asks for ada's name; without a token the hub names her anon-<id>.
    await eve.fill('#nick', 'ada');
    await ada.fill('#room', room);
    await eve.fill('#room', room);
    await ada.click('#join');
    await eve.click('#join');
    await Promise.all([waitJoined(ada, room), waitJoined(eve, room)]);

    const hello = `hello over wss ${Date.now()}`;
    await ada.fill('#input', hello);
    await ada.press('#input', 'Enter');
    await Promise.all([waitMessage(ada, hello, 'ada'), waitMessage(eve, hello, 'ada')]);

    const reply = `reply ${Date.now()}`;
    await eve.fill('#input', reply);
    await eve.press('#input', 'Enter');
    const seen = await waitMessage(ada, reply, 'anon-');
    assert.ok(!seen.includes('ada'), `eve's message does not pass for ada's: ${seen}`);
  } catch (e) {
    console.error(`hub output (tail):\n${log.slice(-2000)}`);
    throw e;
  }
});
