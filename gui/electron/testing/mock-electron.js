'use strict';
// A recording stand-in for the `electron` module, installed through Node's module loader so that
// main.js and preload.js run unchanged under `node --test`.
const Module = require('node:module');
const { EventEmitter } = require('node:events');
const os = require('node:os');
const path = require('node:path');
const fs = require('node:fs');

let current = null;
const originalLoad = Module._load;
Module._load = function load(request, ...rest) {
  if (request === 'electron') {
    if (!current) throw new Error('test bug: no electron mock installed');
    return current;
  }
  return originalLoad.call(this, request, ...rest);
};

function createElectronMock({ gotLock = true } = {}) {
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'genesis-userdata-'));
  const windows = [];
  const handlers = new Map();
  const exposed = {};
  const invoked = [];
  const calls = { quit: 0, headerHooks: [] };

  class BrowserWindow extends EventEmitter {
    constructor(options) {
      super();
      this.options = options;
      this.loads = [];
      this.destroyed = false;
      this.bounds = { x: 10, y: 20, width: options.width, height: options.height };
      this.webContents = Object.assign(new EventEmitter(), {
        setWindowOpenHandler: (fn) => { this.windowOpenHandler = fn; },
      });
      windows.push(this);
    }
    loadURL(url) { this.loads.push(url); setImmediate(() => this.emit('ready-to-show')); return Promise.resolve(); }
    loadFile(file, opts = {}) { this.loads.push(`file:${file}#${opts.hash || ''}`); return Promise.resolve(); }
    show() { this.shown = true; }
    close() { this.emit('close'); this.destroyed = true; }
    isDestroyed() { return this.destroyed; }
    isMaximized() { return false; }
    isMinimized() { return false; }
    maximize() {}
    restore() {}
    focus() { this.focused = true; }
    getBounds() { return this.bounds; }
    getNormalBounds() { return this.bounds; }
  }

  const app = Object.assign(new EventEmitter(), {
    requestSingleInstanceLock: () => gotLock,
    whenReady: () => Promise.resolve(),
    quit: () => { calls.quit += 1; app.emit('before-quit', { preventDefault() { calls.prevented = true; } }); },
    getPath: (name) => (name === 'userData' ? userData : os.tmpdir()),
  });
  return {
    app,
    BrowserWindow,
    calls,
    windows,
    handlers,
    exposed,
    invoked,
    userData,
    ipcMain: { handle: (channel, fn) => handlers.set(channel, fn) },
    ipcRenderer: { invoke: (channel, ...args) => { invoked.push([channel, ...args]); return Promise.resolve(channel); } },
    contextBridge: { exposeInMainWorld: (key, value) => { exposed[key] = value; } },
    dialog: { showOpenDialog: async () => ({ canceled: true, filePaths: [] }), showSaveDialog: async () => ({ canceled: true }) },
    shell: { openExternal: () => {}, showItemInFolder: () => {}, openPath: async () => '' },
    session: {
      defaultSession: {
        webRequest: { onHeadersReceived: (fn) => calls.headerHooks.push(fn) },
        setPermissionRequestHandler: () => {},
      },
    },
  };
}

function installElectronMock(options) {
  current = createElectronMock(options);
  return current;
}

/** A fresh copy of a module of the shell (main.js keeps state per process). */
function freshRequire(file) {
  delete require.cache[require.resolve(file)];
  return require(file);
}

module.exports = { installElectronMock, freshRequire };
