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
  assert.deepEqual(backend.resolveBackend({ argv: ['electron', '.', '--backend-url=http://127.0.0.1:8000/x'], env: {} }),
    { mode: 'connect', url: 'http://127.0.0.1:8000', token: null });
  assert.deepEqual(backend.resolveBackend({ argv: [], env: { GENESIS_BACKEND_URL: 'https://gpu.local' } }),
    { mode: 'connect', url: 'https://gpu.local', token: null });
});

test('a remote backend must use https unless the user opts in', () => {
  const remote = ['--backend-url=http://10.0.0.5:8000'];
  assert.throws(() => backend.resolveBackend({ argv: remote, env: {} }),
    (err) => err instanceof backend.BackendError && /plain http/.test(err.message) && /https/.test(err.fix));
  assert.deepEqual(backend.resolveBackend({ argv: [...remote, '--allow-insecure-backend'], env: {} }),
    { mode: 'connect', url: 'http://10.0.0.5:8000', token: null });
  assert.equal(backend.resolveBackend({ argv: remote, env: { GENESIS_ALLOW_INSECURE_BACKEND: '1' } }).mode, 'connect');
  for (const local of ['http://localhost:9', 'http://127.0.0.2:9', 'http://[::1]:9']) {
    assert.equal(backend.resolveBackend({ argv: [`--backend-url=${local}`], env: {} }).mode, 'connect', local);
  }
  assert.throws(() => backend.resolveBackend({ argv: ['--backend-url=https://me:pw@gpu.local'], env: {} }),
    /user name or password/);
});

test('the token comes from the launcher: a flag or GENESIS_TOKEN', () => {
  const url = '--backend-url=https://gpu.local';
  assert.equal(backend.resolveBackend({ argv: [url, '--backend-token=abc'], env: { GENESIS_TOKEN: 'env' } }).token, 'abc');
  assert.equal(backend.resolveBackend({ argv: [url], env: { GENESIS_TOKEN: 'env' } }).token, 'env');
  assert.equal(backend.resolveBackend({ argv: [], env: { GENESIS_TOKEN: 'spawned' } }).token, 'spawned');
  assert.equal(backend.pageUrl('https://gpu.local:9', 'a b&c'), 'https://gpu.local:9/?token=a+b%26c');
  assert.equal(backend.pageUrl('http://127.0.0.1:9', null), 'http://127.0.0.1:9/');
  assert.deepEqual(backend.authHeaders('t'), { Authorization: 'Bearer t' });
  assert.deepEqual(backend.authHeaders(null), {});
});

test('origins are compared parsed, never as string prefixes', () => {
  const base = 'http://127.0.0.1:8741';
  assert.ok(backend.sameOrigin(`${base}/index.html?x=1`, base));
  assert.ok(backend.sameOrigin('HTTP://127.0.0.1:8741/', base));
  for (const url of [`${base}@other.host/`, `${base}.evil.example/`, 'http://127.0.0.1:87410/', 'https://127.0.0.1:8741/',
    'http://localhost:8741/', 'http://user@127.0.0.1:8741/', 'file:///etc/passwd', 'javascript:alert(1)', 'not a url', '']) {
    assert.equal(backend.sameOrigin(url, base), false, url);
  }
  assert.ok(backend.sameOrigin('https://gpu.local/x', 'https://gpu.local:443'), 'default ports are the same port');
});

test('the health check sends the token and explains a 401', async () => {
  const seen = [];
  const ok = async (url, opts) => { seen.push(opts.headers); return { ok: true, status: 200, json: async () => ({ status: 'ok' }) }; };
  await backend.waitForHealth('https://gpu.local', { token: 'tk', fetchImpl: ok, timeoutMs: 1000 });
  assert.deepEqual(seen, [{ Authorization: 'Bearer tk' }]);
  const denied = async () => ({ ok: false, status: 401 });
  await assert.rejects(backend.waitForHealth('https://gpu.local', { fetchImpl: denied, timeoutMs: 5000 }),
    (err) => /requires an access token/.test(err.message) && /--backend-token/.test(err.fix));
});

test('a bad configured URL is explained', () => {
  assert.throws(() => backend.resolveBackend({ argv: ['--backend-url=nonsense'], env: {} }),
    (err) => err instanceof backend.BackendError && /not a valid URL/.test(err.message) && /http:\/\//.test(err.fix));
  assert.throws(() => backend.resolveBackend({ argv: ['--backend-url=ftp://x'], env: {} }), /must start with http/);
});

test('without a URL the server is spawned from the project .venv', () => {
  const linux = backend.resolveBackend({ argv: [], env: {}, root: '/repo', platform: 'linux' });
  assert.deepEqual(linux, { mode: 'spawn', python: '/repo/.venv/bin/python', cwd: '/repo', token: null });
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
