'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const backend = require('../backend');

const FAKE = path.join(__dirname, '..', 'testing', 'fake-server.js');

async function startFake(mode) {
  const port = await backend.freePort();
  return backend.startServer({ python: FAKE, port, env: { ...process.env, FAKE_SERVER_MODE: mode } });
}

test('a configured URL connects instead of spawning', () => {
  assert.deepEqual(backend.resolveBackend({ argv: ['electron', '.', '--backend-url=http://10.0.0.5:8000/x'], env: {} }),
    { mode: 'connect', url: 'http://10.0.0.5:8000' });
  assert.deepEqual(backend.resolveBackend({ argv: [], env: { GENESIS_BACKEND_URL: 'https://gpu.local' } }),
    { mode: 'connect', url: 'https://gpu.local' });
});

test('a bad configured URL is explained', () => {
  assert.throws(() => backend.resolveBackend({ argv: ['--backend-url=nonsense'], env: {} }),
    (err) => err instanceof backend.BackendError && /not a valid URL/.test(err.message) && /http:\/\//.test(err.fix));
  assert.throws(() => backend.resolveBackend({ argv: ['--backend-url=ftp://x'], env: {} }), /must start with http/);
});

test('without a URL the server is spawned from the project .venv', () => {
  const linux = backend.resolveBackend({ argv: [], env: {}, root: '/repo', platform: 'linux' });
  assert.deepEqual(linux, { mode: 'spawn', python: '/repo/.venv/bin/python', cwd: '/repo' });
  const win = backend.resolveBackend({ argv: [], env: {}, root: 'C:\\g', platform: 'win32' });
  assert.match(win.python, /\.venv.Scripts.python\.exe$/);
});

test('a missing .venv is a clear error, not a crash', () => {
  assert.throws(() => backend.startServer({ python: '/nonexistent/.venv/bin/python', port: 1 }),
    (err) => /Python environment of Genesis was not found/.test(err.message) && /bootstrap\.py install/.test(err.fix));
});

test('spawn, wait for health, then shut down', async () => {
  const server = await startFake('ok');
  const seen = [];
  server.onLine((line) => seen.push(line));
  const health = await backend.waitForHealth(server.url, { timeoutMs: 10000, intervalMs: 50, server });
  assert.equal(health.status, 'ok');
  assert.ok(seen.some((l) => l.includes('-m gui.backend.launcher --no-window --port')), seen.join('\n'));
  assert.ok(seen.some((l) => backend.READY_LINE.test(l)));
  await backend.stopServer(server.child, { graceMs: 3000 });
  assert.equal(server.child.exitCode, 0, 'SIGTERM lets the server exit cleanly');
});

test('health wait times out with the server log attached', async () => {
  const server = await startFake('never');
  const statuses = [];
  await assert.rejects(
    backend.waitForHealth(server.url, { timeoutMs: 700, intervalMs: 50, server, onStatus: (s) => statuses.push(s) }),
    (err) => err instanceof backend.BackendError && /did not answer/.test(err.message) && /Loading models/.test(err.detail));
  assert.ok(statuses.length > 0);
  await backend.stopServer(server.child);
});

test('a server that dies while starting is reported at once', async () => {
  const server = await startFake('crash');
  const started = Date.now();
  await assert.rejects(backend.waitForHealth(server.url, { timeoutMs: 20000, intervalMs: 50, server }),
    (err) => /stopped while starting \(exit 3\)/.test(err.message) && /No module named fastapi/.test(err.detail));
  assert.ok(Date.now() - started < 10000);
});

test('connecting to an address with nothing there times out with advice', async () => {
  const port = await backend.freePort();
  await assert.rejects(backend.waitForHealth(`http://127.0.0.1:${port}`, { timeoutMs: 300, intervalMs: 50 }),
    (err) => /did not answer/.test(err.message) && /reachable/.test(err.fix));
});

test('stopServer forces a server that ignores SIGTERM', async () => {
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath,
    ['-e', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"]);
  await new Promise((r) => child.stdout.once('data', r));
  await backend.stopServer(child, { graceMs: 300 });
  assert.equal(child.signalCode, 'SIGKILL');
});
