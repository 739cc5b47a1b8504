// What the browser tests share: the wshub binary under test, how Chromium
// is started, and a free port.
import fs from 'node:fs';
import net from 'node:net';

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
