'use strict';
// The only bridge between the web UI and the desktop: four calls, each a single IPC request that
// main.js checks came from the Genesis page. Nothing of Node or Electron leaks into the page.

const { contextBridge, ipcRenderer } = require('electron');

const api = Object.freeze({
  /** Native file dialog; resolves to [{ name, type, data: Uint8Array }] (empty when cancelled). */
  pickImages: () => ipcRenderer.invoke('genesis:pick-images'),
  /** Native save dialog for `{ name, data }`; resolves to the saved path, or null when cancelled. */
  saveFile: (name, data) => ipcRenderer.invoke('genesis:save-file', { name: String(name), data }),
  /** The job server's address (http://127.0.0.1:PORT or the configured URL). */
  backendUrl: () => ipcRenderer.invoke('genesis:backend-url'),
  /** Show the last exported file in the system's file manager (or the data folder). */
  openFolder: () => ipcRenderer.invoke('genesis:open-folder'),
});

contextBridge.exposeInMainWorld('genesis', api);
