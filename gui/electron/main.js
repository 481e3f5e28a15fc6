'use strict';
// Electron main process, kept thin: start (or connect to) the job server, show a splash while it
// loads, open the window on the server's web UI, and stop the server on quit. The renderer is the
// same web app the server serves to any browser; it reaches the desktop only through preload.js.

const { app, BrowserWindow, dialog, ipcMain, session, shell } = require('electron');
const fs = require('node:fs');
const path = require('node:path');
const backend = require('./backend');
const { loadWindowState, saveWindowState, MIN_HEIGHT, MIN_WIDTH } = require('./window-state');

const CHANNELS = {
  pickImages: 'genesis:pick-images',
  saveFile: 'genesis:save-file',
  backendUrl: 'genesis:backend-url',
  openFolder: 'genesis:open-folder',
};
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
  "connect-src 'self' data: blob:", "worker-src 'self' blob:", "font-src 'self'", "object-src 'none'",
  "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');
const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'webp'];
const MAX_PICKED_IMAGES = 8;
const MAX_IMAGE_BYTES = 64 * 2 ** 20;
const EXPORT_TYPES = { glb: 'glTF binary', zip: 'OBJ (zip)', obj: 'OBJ', stl: 'STL', ply: 'PLY', png: 'PNG image' };

const state = {
  server: null, url: null, token: null, mainWindow: null, splash: null, lastSaved: null, quitting: false, failed: false,
};

function webPreferences(extra = {}) {
  return { contextIsolation: true, nodeIntegration: false, sandbox: true, webSecurity: true, ...extra };
}

function showSplash(status) {
  if (!state.splash || state.splash.isDestroyed()) return;
  state.splash.loadFile(path.join(__dirname, 'splash.html'), { hash: encodeURIComponent(JSON.stringify(status)) });
}

function createSplash() {
  state.splash = new BrowserWindow({
    width: 520, height: 320, resizable: false, frame: false, show: true, backgroundColor: '#15171b',
    title: 'Genesis', webPreferences: webPreferences(),
  });
  showSplash({ state: 'loading', message: 'Starting Genesis…' });
}

function fromOurPage(event) {
  return Boolean(state.url && event?.senderFrame) && backend.sameOrigin(event.senderFrame.url, state.url);
}

function registerIpc() {
  const guard = (fn) => async (event, ...args) => {
    if (!fromOurPage(event)) throw new Error('Refused: request from a page that is not the Genesis UI.');
    return fn(...args);
  };
  ipcMain.handle(CHANNELS.backendUrl, guard(async () => state.url));
  ipcMain.handle(CHANNELS.pickImages, guard(pickImages));
  ipcMain.handle(CHANNELS.saveFile, guard(saveFile));
  ipcMain.handle(CHANNELS.openFolder, guard(openFolder));
}

async function pickImages() {
  const result = await dialog.showOpenDialog(state.mainWindow, {
    title: 'Choose images', properties: ['openFile', 'multiSelections'],
    filters: [{ name: 'Images', extensions: IMAGE_EXTENSIONS }],
  });
  if (result.canceled) return [];
  return result.filePaths.slice(0, MAX_PICKED_IMAGES).map((file) => {
    const { size } = fs.statSync(file);
    if (size > MAX_IMAGE_BYTES) throw new Error(`${path.basename(file)} is larger than 64 MB.`);
    const ext = path.extname(file).slice(1).toLowerCase();
    return { name: path.basename(file), type: ext === 'jpg' ? 'image/jpeg' : `image/${ext}`, data: fs.readFileSync(file) };
  });
}

async function saveFile(request) {
  const { name, data } = request || {};
  if (typeof name !== 'string' || !name || !(data instanceof Uint8Array || data instanceof ArrayBuffer)) {
    throw new Error('saveFile needs { name, data } with the file bytes.');
  }
  const safeName = path.basename(name).replace(/[<>:"|?*\u0000-\u001f]/g, '_');
  const ext = path.extname(safeName).slice(1).toLowerCase();
  const result = await dialog.showSaveDialog(state.mainWindow, {
    title: 'Export model', defaultPath: path.join(app.getPath('downloads'), safeName),
    filters: ext ? [{ name: EXPORT_TYPES[ext] || ext.toUpperCase(), extensions: [ext] }] : [],
  });
  if (result.canceled || !result.filePath) return null;
  fs.writeFileSync(result.filePath, Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data));
  state.lastSaved = result.filePath;
  return result.filePath;
}

async function openFolder() {
  if (state.lastSaved && fs.existsSync(state.lastSaved)) {
    shell.showItemInFolder(state.lastSaved);
    return true;
  }
  if (state.server) {
    const dataDir = process.env.GENESIS_DATA_DIR || path.join(backend.REPO_ROOT, 'outputs');
    return (await shell.openPath(dataDir)) === '';
  }
  return false;
}

function lockDownSession() {
  session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
    const headers = { ...details.responseHeaders };
    if (backend.sameOrigin(details.url, state.url) && details.resourceType === 'mainFrame') {
      headers['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
    }
    callback({ responseHeaders: headers });
  });
  session.defaultSession.setPermissionRequestHandler((_wc, permission, callback) => {
    callback(permission === 'clipboard-sanitized-write');
  });
}

function createMainWindow() {
  const saved = loadWindowState(app.getPath('userData'));
  const win = new BrowserWindow({
    ...saved, minWidth: MIN_WIDTH, minHeight: MIN_HEIGHT, show: false, backgroundColor: '#15171b', title: 'Genesis',
    webPreferences: webPreferences({ preload: path.join(__dirname, 'preload.js') }),
  });
  state.mainWindow = win;
  if (saved.maximized) win.maximize();
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https?:/i.test(url) && !backend.sameOrigin(url, state.url)) shell.openExternal(url);
    return { action: 'deny' };
  });
  const stayHome = (event, url) => {
    if (!backend.sameOrigin(url, state.url)) event.preventDefault();
  };
  win.webContents.on('will-navigate', stayHome);
  win.webContents.on('will-redirect', stayHome);
  win.webContents.on('will-attach-webview', (event) => event.preventDefault());
  win.on('close', () => saveWindowState(app.getPath('userData'), win));
  win.once('ready-to-show', () => {
    win.show();
    if (state.splash && !state.splash.isDestroyed()) state.splash.close();
  });
  win.loadURL(backend.pageUrl(state.url, state.token));
  return win;
}

async function boot() {
  createSplash();
  try {
    const config = backend.resolveBackend();
    state.token = config.token;
    if (config.mode === 'spawn') {
      const port = await backend.freePort();
      showSplash({ state: 'loading', message: 'Starting the Genesis server…', detail: '' });
      state.server = backend.startServer({ python: config.python, cwd: config.cwd, port });
      state.server.onLine((line) => {
        if (!state.failed) showSplash({ state: 'loading', message: 'Starting the Genesis server…', detail: line });
      });
      state.url = state.server.url;
    } else {
      state.url = config.url;
      showSplash({ state: 'loading', message: `Connecting to ${config.url}…` });
    }
    const timeoutMs = Number(process.env.GENESIS_HEALTH_TIMEOUT_MS) || 180000;
    await backend.waitForHealth(state.url, { timeoutMs, server: state.server, token: state.token });
    lockDownSession();
    registerIpc();
    createMainWindow();
  } catch (err) {
    state.failed = true;
    const fix = err.fix || 'Run "python3 bootstrap.py install" in the Genesis folder, then start the app again.';
    showSplash({ state: 'error', message: err.message, fix, detail: err.detail || '' });
    await backend.stopServer(state.server?.child);
  }
}

async function shutdown() {
  if (state.server) await backend.stopServer(state.server.child);
}

const hasLock = app.requestSingleInstanceLock();
if (!hasLock) {
  app.quit();
} else {
  app.on('second-instance', () => {
    const win = state.mainWindow && !state.mainWindow.isDestroyed() ? state.mainWindow : state.splash;
    if (win && !win.isDestroyed()) {
      if (win.isMinimized()) win.restore();
      win.focus();
    }
  });
  app.on('window-all-closed', () => app.quit());
  app.on('before-quit', (event) => {
    if (state.quitting || !state.server || state.server.child.exitCode !== null) return;
    event.preventDefault();
    state.quitting = true;
    shutdown().finally(() => app.quit());
  });
}

const ready = hasLock ? app.whenReady().then(boot) : Promise.resolve();

module.exports = { CHANNELS, CONTENT_SECURITY_POLICY, hasLock, state, ready, shutdown };
