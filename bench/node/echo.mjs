// Echo server on npm `ws` (defaults): sends back every message as it came,
// text as text and binary as binary. Usage: node echo.mjs [--port N] [--host H]
// [--tls-cert FILE --tls-key FILE]; with the PEM files it serves wss:// from
// `https.createServer` (Node's TLS defaults, ALPN http/1.1).
import { WebSocketServer } from 'ws';
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9003' },
    host: { type: 'string', default: '127.0.0.1' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});

const port = Number(values.port);
const tls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
let wss;
if (tls) {
  if (values['tls-cert'] === undefined || values['tls-key'] === undefined) {
    console.error('echo.mjs: --tls-cert and --tls-key go together');
    process.exit(2);
  }
  const server = createServer({
    cert: readFileSync(values['tls-cert']),
    key: readFileSync(values['tls-key']),
    ALPNProtocols: ['http/1.1'],
  });
  wss = new WebSocketServer({ server });
  server.listen(port, values.host, () => {
    console.error(`ws echo listening on wss://${values.host}:${port}/`);
  });
} else {
  wss = new WebSocketServer({ host: values.host, port });
  wss.on('listening', () => {
    console.error(`ws echo listening on ws://${values.host}:${port}/`);
  });
}

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
