// Viewer benchmark page driver (run by tools/bench_viewer.py): loads a GLB into the real Viewer class
// in headless Chromium and reports parse time, first frame, frame time per view mode and JS heap.
//
//   node tools/bench_viewer.mjs --url http://127.0.0.1:PORT --glb /model.glb --frames 60 --gl swiftshader

import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
const require = createRequire(join(ROOT, 'package.json'));
const { chromium } = require('playwright-core');

const { values: opts } = parseArgs({ options: {
  url: { type: 'string' }, glb: { type: 'string', default: '/bench/model.glb' }, frames: { type: 'string', default: '60' },
  gl: { type: 'string', default: 'swiftshader' },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' },
} });

const GL_ARGS = {
  swiftshader: ['--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-gpu'],
  gpu: ['--use-gl=angle', '--use-angle=default', '--enable-gpu', '--ignore-gpu-blocklist'],
};
const browser = await chromium.launch({ executablePath: opts.chromium,
  args: ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--enable-precise-memory-info', ...GL_ARGS[opts.gl]] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${opts.url}/bench/page.html`);
  const result = await page.evaluate(async ([glbUrl, frames]) => {
    const { Viewer, VIEW_MODES } = await import('/js/viewer.js');
    const host = document.createElement('div');
    host.style.width = '1280px';
    host.style.height = '720px';
    const canvas = document.createElement('canvas');
    host.append(canvas);
    document.body.append(host);
    const viewer = new Viewer(canvas, host);
    viewer.resize();
    const gl = viewer.renderer.getContext();
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const glRenderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    const bytes = new Uint8Array(await (await fetch(glbUrl)).arrayBuffer());
    const finish = () => gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
    let t = performance.now();
    const stats = await viewer.load(bytes);
    const loadMs = performance.now() - t;
    t = performance.now();
    viewer.renderer.render(viewer.scene, viewer.camera);
    finish();
    const firstFrameMs = performance.now() - t;
    const perMode = {};
    for (const mode of Object.keys(VIEW_MODES)) {
      viewer.setMode(mode);
      viewer.renderer.render(viewer.scene, viewer.camera); // compile outside the timing
      finish();
      t = performance.now();
      for (let i = 0; i < frames; i += 1) {
        viewer.camera.position.applyAxisAngle({ x: 0, y: 1, z: 0, isVector3: true }, 0.02);
        viewer.camera.lookAt(viewer.controls.target);
        viewer.renderer.render(viewer.scene, viewer.camera);
      }
      finish();
      perMode[mode] = (performance.now() - t) / frames;
    }
    return { glRenderer, stats, loadMs, firstFrameMs, perMode, heapMB: performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null };
  }, [opts.glb, Number(opts.frames)]);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
