// The fan-out load client for Socket.IO servers (socketio.mjs): what
// `wshub bench fanout` does against the hub, done against Socket.IO, whose
// Engine.IO framing `wshub bench` does not speak. bench/compare runs it in
// place of `wshub bench` for the Socket.IO rows, with the same flags.
//
// The accounting is `wshub bench fanout`'s (crates/wshub-bench/src/fanout):
// - `-m` subscribers join one room, subscriber i at URL i mod n (`--url`
//   repeated); then one more connection, also a member, joins at the first
//   URL and publishes `-s`-byte messages that start with the publish time (16
//   hex digits, nanoseconds on this process's clock).
// - The publisher keeps a window: it sends publish N only while N is at most
//   `--window` (128) above the lowest `seq` every subscriber has received.
// - A delivery is a `message` a subscriber reads; those read in the measured
//   window (`--duration`, after `--warmup`) are counted, and each gives a
//   publish->receive latency sample. deliveries/s = those ÷ the window.
// - Each subscriber checks `seq`: a gap counts the skipped ones as lost, a
//   `seq` not above the last as out of order; after the window the run waits
//   (up to `--timeout`) for every subscriber to reach the last publish, and
//   what one has not got by then is lost too.
//
// The client speaks Engine.IO 4 over a WebSocket (npm `ws`) directly,
// as socket.io-client does once it has upgraded, without the polling
// transport: open packet `0{…}` from the server, `40` (connect to "/") and
// its `40{…}` answer, ping `2` answered by pong `3`, events
// `42[…]`, an acknowledged event `42<id>[…]` answered by `43<id>[…]`.
// socket.io-client itself parses every packet through two layers of
// objects; this keeps the client's cost per delivery small, since it
// shares the machine with the servers it measures (bench/README.md).
//
// Usage: node socketio-fanout.mjs --url ws://127.0.0.1:9005 [--url …] -m 10000 -s 64
//          [--duration 10s] [--warmup 2s] [--timeout 60s] [--room bench] [--json]
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const { values } = parseArgs({
  options: {
    url: { type: 'string', multiple: true },
    subscribers: { type: 'string', short: 'm', default: '1000' },
    size: { type: 'string', short: 's', default: '64' },
    duration: { type: 'string', default: '10s' },
    warmup: { type: 'string', default: '2s' },
    timeout: { type: 'string', default: '10s' },
    room: { type: 'string', default: 'bench' },
    window: { type: 'string', default: '128' },
    concurrency: { type: 'string', default: '200' },
    json: { type: 'boolean', default: false },
  },
});

/** Seconds in "10s", "500ms", "2m" or a bare number. */
function seconds(text) {
  const m = /^([0-9.]+)(ms|s|m)?$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1e3 : m[2] === 'm' ? n * 60 : n;
}

const urls = values.url ?? ['ws://127.0.0.1:9005'];
const subscribers = Number(values.subscribers);
const size = Number(values.size);
const duration = seconds(values.duration);
const warmup = seconds(values.warmup);
const timeout = seconds(values.timeout);
const room = values.room;
const window = Number(values.window);
const concurrency = Number(values.concurrency);

const t0 = process.hrtime.bigint();
/** Nanoseconds since the start of the run. */
const now = () => Number(process.hrtime.bigint() - t0);

/** The Engine.IO WebSocket endpoint of a Socket.IO server's base URL. */
const endpoint = (url) => `${url.replace(/\/+$/, '')}/socket.io/?EIO=4&transport=websocket`;

let errors = 0;
let firstError = null;
const error = (what) => {
  errors += 1;
  firstError ??= what;
};

// Measured window, on the `now()` clock; set once everyone has joined.
let windowStart = Infinity;
let windowEnd = Infinity;
let deliveries = 0;
const perUrl = urls.map((url) => ({ url, subscribers: 0, joined: 0, deliveries: 0 }));
const latencies = []; // microseconds, measured window only

// The publisher's window: how many subscribers have `seen` each seq, and
// the lowest seq some subscriber is still at.
const atSeq = new Map();
let minSeen = 0;
let lastSeq = 0; // seq of the last publish
let firstSeq = 0; // seq the room was at when the publisher joined
let wake = null; // the publisher's wait for the window to open

function moveSeen(from, to) {
  const left = (atSeq.get(from) ?? 0) - 1;
  if (left > 0) atSeq.set(from, left);
  else atSeq.delete(from);
  atSeq.set(to, (atSeq.get(to) ?? 0) + 1);
  if (from === minSeen && left <= 0) {
    while (!atSeq.has(minSeen) && minSeen < lastSeq) minSeen += 1;
    if (wake && lastSeq + 1 - minSeen <= window) {
      const w = wake;
      wake = null;
      w();
    }
  }
}

const SEQ = '"seq":';
const MESSAGE = '"message":"';

/**
 * One Socket.IO connection: resolves with it once it has joined `room`
 * (the join's ack gives the room's seq). `onMessage(text)` gets each
 * `message` event's packet.
 */
function connect(url, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(endpoint(url), { perMessageDeflate: false });
    const conn = { ws, seq: 0, closed: false };
    ws.on('error', (e) => {
      if (!conn.joined) reject(e);
      else error(`${url}: ${e.message}`);
    });
    ws.on('close', () => {
      conn.closed = true;
      if (!conn.joined) reject(new Error(`${url}: closed before joining`));
    });
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('42["message"')) return onMessage(text);
      if (text === '2') return ws.send('3');
      if (text.startsWith('0{')) return ws.send('40');
      if (text.startsWith('40')) return ws.send(`421${JSON.stringify(['join', room])}`);
      if (text.startsWith('431')) {
        conn.seq = JSON.parse(text.slice(3))[0].seq;
        conn.joined = true;
        return resolve(conn);
      }
      if (text.startsWith('44') || text === '1') return error(`${url}: ${text.slice(0, 120)}`);
    });
  });
}

/** Runs `make(i)` for i in 0..n, at most `concurrency` at a time. */
async function pool(n, make) {
  let next = 0;
  const out = new Array(n);
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await make(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}

const subs = [];
let failed = 0;
await pool(subscribers, async (i) => {
  const at = i % urls.length;
  perUrl[at].subscribers += 1;
  const sub = { last: 0, lost: 0, outOfOrder: 0, conn: null, at };
  try {
    sub.conn = await connect(urls[at], (text) => {
      const t = now();
      const s = text.indexOf(SEQ) + SEQ.length;
      let seq = 0;
      for (let k = s; ; k++) {
        const d = text.charCodeAt(k) - 48;
        if (d < 0 || d > 9) break;
        seq = seq * 10 + d;
      }
      if (seq <= sub.last) {
        sub.outOfOrder += 1;
        return;
      }
      sub.lost += seq - sub.last - 1;
      moveSeen(sub.last, seq);
      sub.last = seq;
      if (t >= windowStart && t < windowEnd) {
        deliveries += 1;
        perUrl[at].deliveries += 1;
        const m = text.indexOf(MESSAGE) + MESSAGE.length;
        const stamp = parseInt(text.slice(m, m + 16), 16);
        latencies.push((t - stamp) / 1e3);
      }
    });
    sub.last = sub.conn.seq;
    atSeq.set(sub.last, (atSeq.get(sub.last) ?? 0) + 1);
    perUrl[at].joined += 1;
    subs.push(sub);
  } catch (e) {
    failed += 1;
    error(`${urls[at]}: ${e.message}`);
  }
});
minSeen = Math.min(...atSeq.keys());

const publisher = await connect(urls[0], () => {});
firstSeq = publisher.seq;
lastSeq = firstSeq;
minSeen = Math.max(minSeen, Math.min(...atSeq.keys()));

const padding = 'x'.repeat(Math.max(0, size - 16));
const started = now();
windowStart = started + warmup * 1e9;
windowEnd = windowStart + duration * 1e9;
let published = 0;
let publishedTotal = 0;
while (now() < windowEnd && subs.length > 0) {
  if (lastSeq + 1 - minSeen > window) {
    await new Promise((resolve) => {
      wake = resolve;
      // The window may have to wait for a subscriber that is gone: look
      // again now and then, and stop at the end of the measured window.
      setTimeout(() => {
        if (wake === resolve) wake = null;
        resolve();
      }, 50);
    });
    continue;
  }
  const t = now();
  const stamp = t.toString(16).padStart(16, '0');
  publisher.ws.send(`42${JSON.stringify(['publish', room, stamp + padding])}`);
  lastSeq += 1;
  publishedTotal += 1;
  if (t >= windowStart) published += 1;
  // Let the socket and the subscribers run between publishes now and then.
  if (publishedTotal % 16 === 0) await new Promise(setImmediate);
}

// Drain: every subscriber up to the last publish, or the timeout.
const drainEnd = now() + timeout * 1e9;
while (minSeen < lastSeq && now() < drainEnd && subs.some((s) => !s.conn.closed)) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}

let lost = 0;
let outOfOrder = 0;
let disconnected = 0;
let subscribersWithLost = 0;
for (const s of subs) {
  const total = s.lost + (lastSeq - s.last);
  lost += total;
  if (total > 0) subscribersWithLost += 1;
  outOfOrder += s.outOfOrder;
  if (s.conn.closed) disconnected += 1;
}
for (const s of subs) s.conn.ws.terminate();
publisher.ws.terminate();

latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]) : null);
const report = {
  mode: 'fanout',
  generator: 'bench/node/socketio-fanout.mjs',
  url: urls[0],
  publisher_url: urls[0],
  subscribers,
  joined: subs.length,
  failed,
  disconnected,
  room,
  size,
  window,
  duration_secs: duration,
  warmup_secs: warmup,
  published,
  published_total: publishedTotal,
  publishes_per_sec: published / duration,
  deliveries,
  deliveries_per_sec: deliveries / duration,
  latency: { samples: latencies.length, p50_us: pct(50), p90_us: pct(90), p99_us: pct(99), max_us: pct(100) },
  urls: perUrl.map((u) => ({ ...u, deliveries_per_sec: u.deliveries / duration })),
  lost,
  out_of_order: outOfOrder,
  delivery: { lost, duplicated: outOfOrder, subscribers_with_lost: subscribersWithLost, unverified: deliveries },
  errors,
  first_error: firstError,
  passed: lost === 0 && outOfOrder === 0 && failed === 0 && errors === 0,
};
if (values.json) {
  console.log(JSON.stringify(report));
} else {
  console.log(`fanout ${subs.length}/${subscribers} subscribers over ${urls.length} URL(s), ${size} B`);
  console.log(`deliveries    ${deliveries} (${Math.round(report.deliveries_per_sec)}/s), ${published} published`);
  console.log(`latency       p50 ${report.latency.p50_us} us, p99 ${report.latency.p99_us} us`);
  console.log(`delivery      ${lost} lost, ${outOfOrder} out of order; ${failed} failed, ${disconnected} disconnected, ${errors} errors`);
  if (firstError) console.log(`first error   ${firstError}`);
}
process.exit(report.passed ? 0 : 1);
