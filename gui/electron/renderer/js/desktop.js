// The desktop bridge (preload.js exposes `window.genesis` in Electron) with browser fallbacks, so
// the same renderer runs in the desktop window and in any browser served by the job server.

const bridge = window.genesis;

export const desktop = {
  available: Boolean(bridge),
  pickImages: () => bridge.pickImages(),
  backendUrl: () => (bridge ? bridge.backendUrl() : Promise.resolve(location.origin)),
  openFolder: () => (bridge ? bridge.openFolder() : Promise.resolve(false)),

  /** Save bytes under `name`: a native save dialog in Electron, a download in a browser. */
  async saveFile(name, bytes, type = 'application/octet-stream') {
    if (bridge) return bridge.saveFile(name, bytes);
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    return name;
  },
};
