// Echo server on npm `ws` (defaults): sends back every message as it came,
// text as text and binary as binary. Usage: node echo.mjs [--port N] [--host H]
import { WebSocketServer } from 'ws';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9003' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const wss = new WebSocketServer({ host: values.host, port: Number(values.port) });

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

wss.on('listening', () => {
  console.error(`ws echo listening on ws://${values.host}:${values.port}/`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
