'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { DEFAULT_STATE, MIN_WIDTH, loadWindowState, saveWindowState } = require('../window-state');

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'genesis-ws-'));

test('window size is remembered', () => {
  const dir = tmp();
  const win = { isMaximized: () => false, getBounds: () => ({ x: 5, y: 6, width: 1200, height: 800 }) };
  saveWindowState(dir, win);
  assert.deepEqual(loadWindowState(dir), { x: 5, y: 6, width: 1200, height: 800, maximized: false });
});

test('no file or a damaged file gives the defaults; tiny sizes are clamped', () => {
  const dir = tmp();
  assert.deepEqual(loadWindowState(dir), DEFAULT_STATE);
  fs.writeFileSync(path.join(dir, 'window-state.json'), '{oops');
  assert.deepEqual(loadWindowState(dir), DEFAULT_STATE);
  fs.writeFileSync(path.join(dir, 'window-state.json'), JSON.stringify({ width: 10, height: 'x' }));
  const state = loadWindowState(dir);
  assert.equal(state.width, MIN_WIDTH);
  assert.equal(state.height, DEFAULT_STATE.height);
});
