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
    for (const url of [`${main.state.url}@evil.example/`, `${main.state.url}.evil.example/`]) {
      await assert.rejects(electron.handlers.get('genesis:backend-url')({ senderFrame: { url } }), /Refused/, url);
    }

    const navigation = (url) => {
      let prevented = false;
      win.webContents.emit('will-navigate', { preventDefault: () => { prevented = true; } }, url);
      return prevented;
    };
    assert.equal(navigation(`${main.state.url}/index.html#jobs`), false, 'its own pages may load');
    assert.equal(navigation(`${main.state.url}@other.host/`), true, 'user info does not make another host ours');
    assert.equal(navigation('https://evil.example/'), true);
    const opened = [];
    electron.shell.openExternal = (url) => opened.push(url);
    assert.deepEqual(win.windowOpenHandler({ url: `${main.state.url}@other.host/` }), { action: 'deny' });
    assert.deepEqual(win.windowOpenHandler({ url: `${main.state.url}/x` }), { action: 'deny' });
    assert.deepEqual(opened, [`${main.state.url}@other.host/`], 'foreign links open in the browser, never here');

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

test('a server that needs a token: the window passes it from the launcher', () =>
  withEnv({ GENESIS_PYTHON: FAKE, FAKE_SERVER_MODE: 'ok', GENESIS_BACKEND_URL: undefined, GENESIS_TOKEN: 's3cret' },
    async () => {
      const electron = installElectronMock();
      const main = freshRequire('../main.js');
      await main.ready;
      const win = electron.windows[1];
      assert.ok(win, 'main window opened');
      assert.equal(win.loads[0], `${main.state.url}/?token=s3cret`);
      await main.shutdown();
    }));

test('a plain-http backend on another machine is refused without the opt-in', () =>
  withEnv({ GENESIS_BACKEND_URL: 'http://192.0.2.7:8741', GENESIS_ALLOW_INSECURE_BACKEND: undefined }, async () => {
    const electron = installElectronMock();
    const main = freshRequire('../main.js');
    await main.ready;
    assert.equal(electron.windows.length, 1, 'only the splash');
    const status = splashStatus(electron.windows[0]);
    assert.equal(status.state, 'error');
    assert.match(status.message, /plain http/);
    assert.match(status.fix, /allow-insecure-backend/);
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
