#!/usr/bin/env node
'use strict';
// Stands in for `python -m gui.backend.launcher` in the shell's tests. FAKE_SERVER_MODE:
// ok (healthy after a short load), never (never answers health), crash (fails while loading).
const http = require('node:http');

const args = process.argv.slice(2);
const port = Number(args[args.indexOf('--port') + 1]);
const mode = process.env.FAKE_SERVER_MODE || 'ok';

console.log(`fake launcher args: ${args.join(' ')}`);
console.log('Loading models…');
if (mode === 'crash') {
  console.error('ModuleNotFoundError: No module named fastapi');
  process.exit(3);
}
let healthy = false;
const server = http.createServer((req, res) => {
  if (req.url === '/api/health' && healthy && mode === 'ok') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', version: 'test', device: 'cpu', engines: {} }));
  } else {
    res.writeHead(503);
    res.end();
  }
});
server.listen(port, '127.0.0.1', () => {
  setTimeout(() => {
    healthy = true;
    console.log(`Genesis is running at http://127.0.0.1:${port}`);
  }, 150);
});
process.on('SIGTERM', () => {
  console.log('stopping');
  server.close(() => process.exit(0));
});
