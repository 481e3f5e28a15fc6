'use strict';
// Remembers the main window's size and position between runs (a small JSON file in userData).

const fs = require('node:fs');
const path = require('node:path');

const DEFAULT_STATE = { width: 1440, height: 900, maximized: false };
const MIN_WIDTH = 960;
const MIN_HEIGHT = 640;

function stateFile(userDataDir) {
  return path.join(userDataDir, 'window-state.json');
}

/** The saved window bounds, or sensible defaults when none are saved or the file is damaged. */
function loadWindowState(userDataDir) {
  try {
    const saved = JSON.parse(fs.readFileSync(stateFile(userDataDir), 'utf8'));
    const state = { ...DEFAULT_STATE };
    if (Number.isFinite(saved.width)) state.width = Math.max(MIN_WIDTH, Math.round(saved.width));
    if (Number.isFinite(saved.height)) state.height = Math.max(MIN_HEIGHT, Math.round(saved.height));
    if (Number.isFinite(saved.x) && Number.isFinite(saved.y)) Object.assign(state, { x: saved.x, y: saved.y });
    state.maximized = saved.maximized === true;
    return state;
  } catch {
    return { ...DEFAULT_STATE };
  }
}

/** Write the window's current bounds (normal bounds when maximised) atomically. */
function saveWindowState(userDataDir, win) {
  const bounds = win.isMaximized() ? win.getNormalBounds() : win.getBounds();
  const state = { ...bounds, maximized: win.isMaximized() };
  fs.mkdirSync(userDataDir, { recursive: true });
  const file = stateFile(userDataDir);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(state));
  fs.renameSync(`${file}.tmp`, file);
}

module.exports = { DEFAULT_STATE, MIN_HEIGHT, MIN_WIDTH, loadWindowState, saveWindowState };
