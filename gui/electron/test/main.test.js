'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { installElectronMock, freshRequire } = require('../testing/mock-electron');

const FAKE = path.join(__dirname, '..', 'testing', 'fake-server.js');

function withEnv(vars, fn) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return fn().finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

const splashStatus = (win) => JSON.parse(decodeURIComponent(win.loads.at(-1).split('#')[1]));

test('starts the server, waits for health, opens a locked-down window, stops the server on quit', () =>
  withEnv({ GENESIS_PYTHON: FAKE, FAKE_SERVER_MODE: 'ok', GENESIS_BACKEND_URL: undefined }, async () => {
    const electron = installElectronMock();
    const main = freshRequire('../main.js');
    await main.ready;
    const [splash, win] = electron.windows;
    assert.ok(splash.loads[0].includes('splash.html'));
    assert.ok(win, 'main window opened');
    assert.match(win.loads[0], /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(win.loads[0], `${main.state.url}/`);
    const prefs = win.options.webPreferences;
    assert.equal(prefs.contextIsolation, true);
    assert.equal(prefs.nodeIntegration, false);
    assert.equal(prefs.sandbox, true);
    assert.equal(prefs.preload, path.join(__dirname, '..', 'preload.js'));
    await new Promise((r) => setImmediate(r));
    assert.ok(win.shown && splash.isDestroyed(), 'splash closes once the window is ready');

    assert.deepEqual([...electron.handlers.keys()].sort(), Object.values(main.CHANNELS).sort());
    const fromPage = { senderFrame: { url: `${main.state.url}/index.html` } };
    assert.equal(await electron.handlers.get('genesis:backend-url')(fromPage), main.state.url);
    await assert.rejects(electron.handlers.get('genesis:backend-url')({ senderFrame: { url: 'https://evil.example/' } }),
      /Refused/);

    const [hook] = electron.calls.headerHooks;
    let headers;
    hook({ url: `${main.state.url}/`, resourceType: 'mainFrame', responseHeaders: {} }, (r) => { headers = r.responseHeaders; });
    assert.match(headers['Content-Security-Policy'][0], /script-src 'self'/);
    assert.doesNotMatch(headers['Content-Security-Policy'][0], /unsafe-inline|unsafe-eval/);

    const child = main.state.server.child;
    win.close();
    assert.ok(fs.existsSync(path.join(electron.userData, 'window-state.json')), 'window size saved on close');
    electron.app.emit('window-all-closed');
    assert.equal(electron.calls.prevented, true, 'quit waits for the server');
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    for (let i = 0; i < 50 && electron.calls.quit < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    assert.equal(child.exitCode, 0);
    assert.ok(electron.calls.quit >= 2, 'quits again once the server has stopped');
  }));

test('a server that never becomes healthy shows the error screen and is stopped', () =>
  withEnv({ GENESIS_PYTHON: FAKE, FAKE_SERVER_MODE: 'never', GENESIS_HEALTH_TIMEOUT_MS: '800',
    GENESIS_BACKEND_URL: undefined }, async () => {
    const electron = installElectronMock();
    const main = freshRequire('../main.js');
    await main.ready;
    assert.equal(electron.windows.length, 1, 'only the splash; no main window');
    const status = splashStatus(electron.windows[0]);
    assert.equal(status.state, 'error');
    assert.match(status.message, /did not answer/);
    assert.ok(status.fix.length > 10);
    assert.notEqual(main.state.server.child.exitCode ?? main.state.server.child.signalCode, null, 'server stopped');
  }));

test('a broken installation shows what to run', () =>
  withEnv({ GENESIS_PYTHON: '/nonexistent/python', GENESIS_BACKEND_URL: undefined }, async () => {
    const electron = installElectronMock();
    const main = freshRequire('../main.js');
    await main.ready;
    const status = splashStatus(electron.windows[0]);
    assert.equal(status.state, 'error');
    assert.match(status.fix, /bootstrap\.py install/);
  }));

test('a second instance focuses the first instead of starting', async () => {
  const electron = installElectronMock({ gotLock: false });
  const main = freshRequire('../main.js');
  await main.ready;
  assert.equal(main.hasLock, false);
  assert.equal(electron.calls.quit, 1);
  assert.equal(electron.windows.length, 0);
});
