// Interop: `wshub connect` against an npm `ws` server, and `wshub listen`
// against an npm `ws` client (peers we did not write).
//   WSHUB_BIN=target/debug/wshub node --test node_cli.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import WebSocket, { WebSocketServer } from 'ws';
import { withTimeout } from './common.mjs';

const WSHUB_BIN = process.env.WSHUB_BIN;
const WAIT_MS = 10_000;

const within = (promise, what) => withTimeout(promise, WAIT_MS, what);

// Runs `wshub ARGS`: its stdout and stderr lines as they come, and its exit.
function wshub(args) {
  const child = spawn(WSHUB_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = { stdout: [], stderr: [] };
  const waiters = [];
  for (const name of ['stdout', 'stderr']) {
    createInterface({ input: child[name] }).on('line', (line) => {
      lines[name].push(line);
      for (const w of waiters.splice(0)) w();
    });
  }
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  // Resolves with the first line of `name` matching `re`.
  async function line(name, re) {
    for (;;) {
      const found = lines[name].find((l) => re.test(l));
      if (found !== undefined) return found;
      await within(new Promise((resolve) => waiters.push(resolve)), `${name} to match ${re}`);
    }
  }
  return { child, lines, line, exited };
}

test('wshub connect against a ws server: origin, Basic auth, --execute, the server Ping shown', async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  t.after(() => server.close());
  const seen = {};
  server.on('connection', (ws, request) => {
    seen.origin = request.headers.origin;
    seen.authorization = request.headers.authorization;
    ws.ping('from-ws');
    ws.on('message', (data) => {
      seen.message = data.toString();
      ws.send(`echo ${data}`);
    });
    ws.on('close', (code) => { seen.close = code; });
  });
  const url = `ws://127.0.0.1:${server.address().port}/`;
  const run = wshub(['connect', '--origin', 'http://node.test', '--auth', 'ada:pw',
    '--show-ping-pong', '-x', 'hello', '-1', url]);
  const code = await within(run.exited, 'wshub connect to exit');
  assert.equal(code, 0, run.lines.stderr.join('\n'));
  assert.deepEqual(run.lines.stdout, ['echo hello']);
  assert.equal(seen.origin, 'http://node.test');
  assert.equal(seen.authorization, `Basic ${Buffer.from('ada:pw').toString('base64')}`);
  assert.equal(seen.message, 'hello');
  assert.ok(run.lines.stderr.some((l) => l === 'ping received (payload "from-ws")'), run.lines.stderr.join('\n'));
});

test('wshub listen against a ws client: both ways, a Ping answered, one client at a time', async () => {
  const run = wshub(['listen', '--once', '0']);
  const listening = await run.line('stderr', /^listening on ws:\/\//);
  const url = listening.replace('listening on ', '');
  const ws = new WebSocket(url);
  await within(once(ws, 'open'), 'the ws client to open');
  ws.send('from node');
  await run.line('stdout', /^from node$/);
  const received = within(once(ws, 'message'), 'a message from wshub listen');
  run.child.stdin.write('from wshub\n');
  const [data] = await received;
  assert.equal(data.toString(), 'from wshub');
  const pong = within(once(ws, 'pong'), 'the Pong');
  ws.ping('p');
  const [payload] = await pong;
  assert.equal(payload.toString(), 'p');
  // A second client is turned away while the first is served.
  const second = new WebSocket(url);
  second.on('error', () => {});
  const [, response] = await within(once(second, 'unexpected-response'), 'the 503');
  assert.equal(response.statusCode, 503);
  response.destroy();
  ws.close(1000, 'done');
  const code = await within(run.exited, 'wshub listen --once to exit');
  assert.equal(code, 0, run.lines.stderr.join('\n'));
  assert.ok(run.lines.stderr.some((l) => l.includes('code 1000 reason "done"')), run.lines.stderr.join('\n'));
});
