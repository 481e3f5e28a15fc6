// What the playwright-core scripts share (tools/screenshots.mjs, tests/browser/*.mjs): Chromium's flags for
// headless WebGL through SwiftShader, and dropping an image file onto an element as a person would.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--use-gl=angle',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader'];

/** Drag `file` (a PNG on disk) over `selector` and drop it there. */
export async function dropFile(page, selector, file) {
  const data = readFileSync(file).toString('base64');
  await page.evaluate(async ([sel, b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: 'image/png' }));
    const target = document.querySelector(sel);
    target.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, [selector, data, basename(file)]);
}
