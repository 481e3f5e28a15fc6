// End-to-end test of the Genesis web UI in Debian's headless Chromium (WebGL through SwiftShader),
// against a real job server with tiny models. Driven by tests/browser/test_e2e.py:
//
//   node tests/browser/e2e.mjs --url http://127.0.0.1:PORT --image object.png --out test-artifacts/browser
//
// Exits non-zero with a readable message on the first failed check; screenshots go to --out.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS, dropFile } from '../../tools/browser_page.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const require = createRequire(join(ROOT, 'package.json'));
const { chromium } = require('playwright-core');
const validator = require('gltf-validator');
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const { values: opts } = parseArgs({ options: {
  url: { type: 'string' }, image: { type: 'string' }, out: { type: 'string', default: 'test-artifacts/browser' },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' },
  'job-timeout': { type: 'string', default: '150' },
} });
if (!opts.url || !opts.image) throw new Error('usage: e2e.mjs --url URL --image PNG [--out DIR]');
mkdirSync(opts.out, { recursive: true });
const JOB_TIMEOUT_MS = Number(opts['job-timeout']) * 1000;
const started = Date.now();

function log(message) {
  console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}


const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
page.on('console', (msg) => {
  if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
});

/** A screenshot into the artifacts; of the canvas alone (overlays hidden) when `target` is given. */
async function shot(name, target = page) {
  const path = join(opts.out, `${name}.png`);
  const overlays = (hide) => page.evaluate((h) => {
    for (const el of document.querySelectorAll('.stats, .viewer-empty, .toast')) el.style.visibility = h ? 'hidden' : '';
  }, hide);
  if (target !== page) await overlays(true);
  await target.screenshot({ path });
  if (target !== page) await overlays(false);
  return readFileSync(path);
}

/** How many pixels differ noticeably between two PNG screenshots (decoded in the page). */
async function pixelDifference(a, b) {
  return page.evaluate(async ([pa, pb]) => {
    const decode = async (b64) => {
      const blob = await (await fetch(`data:image/png;base64,${b64}`)).blob();
      const bitmap = await createImageBitmap(blob);
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    };
    const [x, y] = await Promise.all([decode(pa), decode(pb)]);
    if (x.width !== y.width || x.height !== y.height) return x.width * x.height;
    let differ = 0;
    for (let i = 0; i < x.data.length; i += 4) {
      const d = Math.abs(x.data[i] - y.data[i]) + Math.abs(x.data[i + 1] - y.data[i + 1]) + Math.abs(x.data[i + 2] - y.data[i + 2]);
      if (d > 24) differ += 1;
    }
    return differ;
  }, [a.toString('base64'), b.toString('base64')]);
}

async function axeCheck(label) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  const serious = result.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  writeFileSync(join(opts.out, `axe-${label}.json`), JSON.stringify(result.violations, null, 2));
  for (const v of result.violations) log(`axe (${label}) ${v.impact}: ${v.id} — ${v.nodes.length} node(s)`);
  check(serious.length === 0, `accessibility (${label}): ${serious.map((v) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('; ')}`);
  log(`axe (${label}): ${result.passes.length} rules pass, no serious violations`);
}

async function dropImage(selector, file) {
  await dropFile(page, selector, file);
}

const jobItem = (list, state) => page.locator(`#${list} li.job${state ? `[data-state="${state}"]` : ''}`);

try {
  // 1. Load the UI.
  log('browser started');
  await page.goto(opts.url);
  log('page loaded');
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('server-status').dataset.reachable === 'true');
  await page.waitForTimeout(500);
  const canvas = page.locator('#viewer-canvas');
  await shot('01-empty-viewer', canvas);
  // Compare against the empty scene without the grid (the grid follows the model's size).
  await page.uncheck('#toggle-grid');
  await page.waitForTimeout(300);
  const emptyScene = await shot('01-empty-no-grid', canvas);
  await page.waitForTimeout(300);
  const noise = await pixelDifference(emptyScene, await shot('01-empty-no-grid-again', canvas));
  log('UI loaded, server ready');

  // 2. Keyboard: Tab order through the main controls.
  await page.focus('.skip-link');
  const order = [];
  for (let i = 0; i < 45; i += 1) {
    const id = await page.evaluate(() => document.activeElement?.id || document.activeElement?.getAttribute('aria-label') || document.activeElement?.tagName);
    order.push(id);
    await page.keyboard.press('Tab');
  }
  log(`Tab order: ${order.join(' → ')}`);
  const expectOrder = ['mode-image', 'dropzone', 'seed', 'seed-random', 'pipeline-type', 'decimation-target', 'texture-size',
    'export-format', 'remesh', 'view-mode', 'environment', 'toggle-grid', 'reset-view'];
  const positions = expectOrder.map((id) => order.indexOf(id));
  check(positions.every((p) => p >= 0), `every main control is reachable with Tab (missing: ${expectOrder.filter((id, i) => positions[i] < 0)})`);
  check(positions.every((p, i) => i === 0 || p > positions[i - 1]), `Tab order follows the layout: ${positions}`);
  await axeCheck('empty');

  // Multi-view slots and the Fast tab follow what the server reports.
  const health = await page.evaluate(() => fetch('/api/health').then((r) => r.json()));
  check(await page.getAttribute('#mode-fast', 'aria-disabled') === String(!health.engines.fresnel?.ready),
    'the Fast tab is enabled exactly when the server says Fresnel is ready');
  const engines = (await page.evaluate(() => fetch('/api/config').then((r) => r.json()))).engines;
  const faces = (name) => String(engines[name].params.decimation_target.default);
  const header = await page.textContent('#server-status');
  for (const [name, entry] of Object.entries(engines)) {
    const ready = health.engines[name]?.ready;
    check(header.includes(ready ? `${entry.label} ready` : `${entry.label}: `), `the header says whether ${entry.label} can run: ${header}`);
  }
  check(header.includes(health.device === 'cpu' ? 'CPU (slow)' : health.device), `the header names the device: ${header}`);
  if (health.engines.fresnel?.ready) {
    await page.click('#mode-fast');
    check(await page.inputValue('#decimation-target') === faces('fresnel'), 'the Fast tab shows its own draft defaults');
    await page.click('#mode-image');
    check(await page.inputValue('#decimation-target') === faces('trellis2'), 'back on TRELLIS.2, its defaults return');
    await page.click('#mode-fast');
    await page.fill('#decimation-target', '30000');
    await page.click('#mode-image');
    check(await page.inputValue('#decimation-target') === '30000', 'a value the user set stays when the engine changes');
    await page.fill('#decimation-target', faces('trellis2'));
  }
  await page.click('#mode-multiview');
  check(await page.locator('#slots .slot').count() === 4, 'four labelled view slots');
  check(/Front/.test(await page.locator('#slots').innerText()), 'slots are labelled');
  await dropImage('.slot[data-index="0"]', opts.image);
  await page.waitForSelector('.slot[data-index="0"].filled');
  await axeCheck('multiview');
  await page.focus('.slot[data-index="0"]');
  await page.keyboard.press('Alt+ArrowRight');
  check(await page.locator('.slot[data-index="1"].filled').count() === 1
    && await page.locator('.slot[data-index="0"].filled').count() === 0, 'Alt+Right moves a view to the next slot');
  await page.locator('.slot[data-index="1"]').dragTo(page.locator('.slot[data-index="3"]'));
  check(await page.locator('.slot[data-index="3"].filled').count() === 1, 'dragging a view onto another slot moves it');
  check(/1 of 4 views/.test(await page.locator('#multi-note').textContent()), 'the slot count is shown');
  await page.click('#mode-image');

  // 3. Drop an image; the preview note says what happens to the background.
  await dropImage('#dropzone', opts.image);
  await page.waitForFunction(() => /transparency|opaque/.test(document.getElementById('image-note').textContent));
  check(await page.locator('#preview').isVisible(), 'the dropped image is previewed');
  log(`image dropped: ${await page.locator('#image-note').textContent()}`);

  // Fast settings for the tiny models; invalid values block Generate with a reason.
  await page.selectOption('#pipeline-type', '512');
  await page.selectOption('#texture-size', '512');
  await page.fill('#decimation-target', '5');
  check(await page.locator('#generate').isDisabled(), 'an out-of-range value disables Generate');
  check(/Target faces/.test(await page.locator('#form-error').textContent()), 'the form says which value is wrong');
  await page.fill('#decimation-target', '20000');
  await page.fill('#seed', '7');
  await page.uncheck('#remesh');
  check(await page.locator('#generate').isEnabled(), 'valid values enable Generate');

  // 4. Generate with the keyboard (Enter on the focused button); watch stages and progress.
  await page.evaluate(() => {
    // Record every stage name and progress value the queue shows, however briefly.
    window.__seen = { stages: [], progress: [] };
    const record = () => {
      for (const item of document.querySelectorAll('#queue-list li.job')) {
        const stage = item.querySelector('.stage')?.textContent.replace(/ · step .*/, '');
        const value = item.querySelector('[role="progressbar"]')?.getAttribute('aria-valuenow');
        if (stage && !window.__seen.stages.includes(stage)) window.__seen.stages.push(stage);
        if (value !== null && value !== undefined && !window.__seen.progress.includes(Number(value))) {
          window.__seen.progress.push(Number(value));
        }
      }
    };
    new MutationObserver(record).observe(document.getElementById('queue-list'),
      { subtree: true, childList: true, attributes: true, characterData: true });
  });
  await page.focus('#generate');
  await page.keyboard.press('Enter');
  await jobItem('queue-list').first().waitFor();
  const firstId = await jobItem('queue-list').first().getAttribute('data-job-id');
  log(`job ${firstId} queued with Enter`);
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  let runningShot = false;
  while (Date.now() < deadline) {
    if (await page.locator(`#history-list li.job[data-job-id="${firstId}"]`).count()) break;
    if (!runningShot && await page.locator(`#queue-list li.job[data-job-id="${firstId}"][data-state="running"]`).count()) {
      runningShot = true;
      await shot('02-job-running');
    }
    await page.waitForTimeout(200);
  }
  const seen = await page.evaluate(() => window.__seen);
  const stages = new Set(seen.stages);
  const progress = new Set(seen.progress);
  const finished = page.locator(`#history-list li.job[data-job-id="${firstId}"]`);
  const finalState = await finished.getAttribute('data-state');
  log(`stages seen: ${[...stages].join(' | ')}; progress values: ${[...progress].sort((a, b) => a - b).join(', ')}`);
  if (finalState !== 'succeeded') {
    await shot('99-job-failed');
    throw new Error(`check failed: the job ${finalState}: ${await finished.locator('.error').textContent().catch(() => '(no error shown)')}`);
  }
  check(stages.size >= 3, `at least three stage names were shown (${[...stages]})`);
  check(progress.size >= 3, `the progress bar moved (${[...progress]})`);

  // 5. The model appears in the viewer.
  await page.waitForSelector('#viewport[data-loaded="true"]', { timeout: 30000 });
  await page.waitForTimeout(600);
  const loaded = await shot('03-model-pbr', canvas);
  const changed = await pixelDifference(emptyScene, loaded);
  log(`model shown: ${changed} canvas pixels differ from the empty scene (two empty shots differ in ${noise})`);
  check(changed >= Math.max(30, 10 * noise), 'the canvas shows the model');
  const stats = await page.locator('#stats').innerText();
  check(/Vertices\s+[\d,]+/.test(stats) && /Faces\s+[\d,]+/.test(stats) && /File size/.test(stats), `stats are shown: ${stats}`);
  await page.check('#toggle-grid');
  await page.waitForTimeout(300);
  await shot('main-window');
  await page.uncheck('#toggle-grid');

  // 6. Every viewer mode renders, and the modes look different from each other.
  const modes = await page.$$eval('#view-mode option', (os) => os.map((o) => o.value));
  check(modes.length === 8, `eight view modes (${modes})`);
  const modeShots = {};
  for (const mode of modes) {
    await page.selectOption('#view-mode', mode);
    await page.waitForTimeout(400);
    modeShots[mode] = await shot(`04-mode-${mode}`, canvas);
    const shown = await pixelDifference(emptyScene, modeShots[mode]);
    check(shown >= 0.2 * changed, `mode ${mode} shows the model (${shown} pixels)`);
  }
  // The modes must look different from each other wherever the model is (a tenth of its coverage).
  for (const [a, b] of [['pbr', 'wireframe'], ['clay', 'uv'], ['normals', 'basecolor'], ['pbr', 'clay']]) {
    const d = await pixelDifference(modeShots[a], modeShots[b]);
    check(d > 0.1 * changed, `${b} looks different from ${a} (${d} pixels differ)`);
  }
  await page.selectOption('#view-mode', 'pbr');
  await page.check('#toggle-grid');
  for (const [toggle, name] of [['#toggle-backface', 'backfaces'], ['#toggle-axes', 'axes']]) {
    await page.check(toggle);
    await page.waitForTimeout(300);
    await shot(`05-${name}`, canvas);
    await page.uncheck(toggle);
  }
  for (const env of await page.$$eval('#environment option', (os) => os.map((o) => o.value))) {
    await page.selectOption('#environment', env);
  }
  await page.selectOption('#environment', 'studio');
  await page.click('#reset-view');
  log(`all ${modes.length} view modes render`);
  await axeCheck('model-loaded');

  // 7. A second, longer job is cancelled.
  await page.locator('#advanced summary').click();
  for (const id of ['sparse-structure-steps', 'shape-slat-steps', 'tex-slat-steps']) await page.fill(`#${id}`, '50');
  await page.click('#generate');
  const second = jobItem('queue-list').first();
  await second.waitFor();
  await page.waitForFunction(() => document.querySelector('#queue-list li.job[data-state="running"]'), null, { timeout: 30000 });
  await second.getByRole('button', { name: /Cancel/ }).click();
  await page.waitForSelector('#history-list li.job[data-state="cancelled"]', { timeout: 60000 });
  log('second job cancelled');

  // 8. Copy a job's settings back into the form.
  await page.fill('#seed', '123');
  await jobItem('history-list', 'succeeded').first().getByRole('button', { name: /Use settings/ }).click();
  check(await page.inputValue('#seed') === '7', 'Use settings restores the seed of the job');

  // 9. Re-export with other settings and download a GLB that parses.
  await page.click('#export-open');
  await page.selectOption('#ex-format', 'glb');
  await page.selectOption('#ex-texture', '1024');
  await page.fill('#ex-decimation', '15000');
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 90000 }), page.click('#export-run')]);
  const glbPath = join(opts.out, 'reexport.glb');
  await download.saveAs(glbPath);
  await page.waitForFunction(() => /Saved/.test(document.getElementById('export-status').textContent));
  await shot('06-export-dialog');
  await page.click('#export-cancel');
  const glb = readFileSync(glbPath);
  check(glb.subarray(0, 4).toString('latin1') === 'glTF', 'the download is a binary glTF');
  const report = await validator.validateBytes(new Uint8Array(glb));
  writeFileSync(join(opts.out, 'reexport-validation.json'), JSON.stringify(report, null, 2));
  check(report.issues.numErrors === 0, `the GLB validates (${report.issues.numErrors} errors)`);
  log(`re-exported GLB: ${glb.length} bytes, ${report.info?.totalVertexCount ?? '?'} vertices, validator errors 0`);

  // 10. Delete the cancelled job (two clicks: the first one only arms).
  const cancelled = jobItem('history-list', 'cancelled').first();
  await cancelled.getByRole('button', { name: /Delete/ }).click();
  await cancelled.getByRole('button', { name: /Delete/ }).click();
  await page.waitForFunction(() => !document.querySelector('#history-list li.job[data-state="cancelled"]'));
  await shot('history');
  log('cancelled job deleted');

  check(problems.length === 0, `no page or console errors (${problems.join(' | ')})`);
  log('all checks passed');
} catch (err) {
  await shot('99-failure').catch(() => {});
  console.error(err.stack || String(err));
  if (problems.length) console.error(`page problems: ${problems.join(' | ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
