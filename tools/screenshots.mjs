// Takes the README screenshots from the real app (driven by tools/take_screenshots.py):
//   main-window.png (a model loaded), multiview.png (the view slots), history.png (finished jobs);
//   with --fast PHOTO instead: fast-tab.png (the Fast tab, a Fresnel model from that photo in the viewer);
//   with --models instead: models-panel.png (the Models panel, a gated model failed and TRELLIS.2 downloading);
//   with --first-start instead: first-start.png (a fresh install: the header, the Fast tab, the missing-models line);
//   with --export-progress IMAGE instead: export-progress.png (a second job of one kind, baking, with its time left).
//
//   node tools/screenshots.mjs --url URL --image object.png --views a.png,b.png,c.png,d.png --out docs/screenshots
//   node tools/screenshots.mjs --url URL --fast photo.jpg --out docs/screenshots
//   node tools/screenshots.mjs --url URL --models --out docs/screenshots
//   node tools/screenshots.mjs --url URL --first-start --out docs/screenshots
//   node tools/screenshots.mjs --url URL --export-progress object.png --out docs/screenshots

import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS, dropFile } from './browser_page.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
const require = createRequire(join(ROOT, 'package.json'));
const { chromium } = require('playwright-core');

const { values: opts } = parseArgs({ options: {
  url: { type: 'string' }, image: { type: 'string' }, views: { type: 'string' }, fast: { type: 'string' },
  models: { type: 'boolean', default: false }, 'first-start': { type: 'boolean', default: false },
  'export-progress': { type: 'string' },
  out: { type: 'string', default: join(ROOT, 'docs', 'screenshots') },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' },
} });
const single = opts.fast || opts.models || opts['first-start'] || opts['export-progress'];
if (!opts.url || !(single || (opts.image && opts.views))) {
  throw new Error('usage: screenshots.mjs --url URL (--image PNG --views A,B,C,D | --fast PHOTO | --models | --first-start | --export-progress PNG)');
}
mkdirSync(opts.out, { recursive: true });

const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const log = (m) => console.log(`[screenshots] ${m}`);

const drop = (selector, file) => dropFile(page, selector, file);

async function generate(seed) {
  await page.fill('#seed', String(seed));
  const before = await page.locator('#history-list li.job').count();
  await page.click('#generate');
  await page.waitForFunction((n) => document.querySelectorAll('#history-list li.job').length > n, before, { timeout: 300000 });
  log(`job with seed ${seed} finished`);
}

async function hideToast() {
  await page.evaluate(() => { document.getElementById('toast').hidden = true; });
}

/** A screenshot of the whole window (without the toast) into --out. */
async function snap(name) {
  await hideToast();
  await page.screenshot({ path: join(opts.out, name) });
  log(name);
}

/** Drop `image` into the single-image input and wait until the app has read it. */
async function dropImage(image) {
  await drop('#dropzone', image);
  await page.waitForFunction(() => /transparency|opaque/.test(document.getElementById('image-note').textContent));
}

/** Once the viewer holds the model: light it with `environment`, frame it, and take `name`. */
async function snapModel(environment, name) {
  await page.waitForSelector('#viewport[data-loaded="true"]');
  await page.selectOption('#environment', environment);
  await page.click('#reset-view');
  await page.waitForTimeout(800);
  await snap(name);
}

/** The first start without downloads: the app opens on Fast; a photo goes in, a Fresnel model comes out. */
async function fastTab() {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('mode-fast')?.getAttribute('aria-selected') === 'true');
  await dropImage(opts.fast);
  await generate(0);
  await snapModel('studio', 'fast-tab.png');
}

/** The Models panel: a gated model tried without a token, then TRELLIS.2 caught mid-download. */
async function modelsPanel() {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.click('#models-open');
  await page.waitForSelector('#models-dialog[open] #models-list li');
  const row = (id) => `#models-list li[data-repo="${id}"]`;
  const gated = 'facebook/dinov3-vitl16-pretrain-lvd1689m';
  await page.click(`${row(gated)} button[data-verb="download"]`);
  await page.waitForSelector(`${row(gated)}[data-task="failed"]`);
  const pipeline = 'microsoft/TRELLIS.2-4B';
  await page.click(`${row(pipeline)} button[data-verb="download"]`);
  await page.waitForFunction((sel) => Number(document.querySelector(`${sel} [role="progressbar"]`)?.getAttribute('aria-valuenow')) >= 40
    && / left$/.test(document.querySelector(`${sel} .model-progress-text`)?.textContent || ''), row(pipeline), { timeout: 60000 });
  await snap('models-panel.png');
}

/** A fresh install before anything is dropped in: the header's summary, the Fast tab, the missing-models line. */
async function firstStart() {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('mode-fast')?.getAttribute('aria-selected') === 'true');
  await page.waitForSelector('#fast-note:not([hidden])');
  await page.waitForTimeout(500);
  await snap('first-start.png');
}

/** Two jobs of one kind (the real export of a rough sphere); the second caught baking, its time left from the first. */
async function exportProgress() {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('server-status').dataset.reachable === 'true');
  await dropImage(opts['export-progress']);
  await generate(1);
  await page.waitForSelector('#viewport[data-loaded="true"]');
  await page.fill('#seed', '2');
  await page.evaluate(() => { // what the running job showed, for the log when it is not caught
    window.__seen = new Set();
    setInterval(() => {
      const item = document.querySelector('#queue-list li.job[data-state="running"]');
      if (item) window.__seen.add(`${item.querySelector('.stage')?.textContent} | ${item.querySelector('.time-left')?.textContent}`);
    }, 100);
  });
  await page.click('#generate');
  const baking = () => {
    const item = document.querySelector('#queue-list li.job[data-state="running"]');
    const stage = item?.querySelector('.stage')?.textContent || '';
    const left = item?.querySelector('.time-left')?.textContent || '';
    return /^Exporting: baking textures/.test(stage) && /^about \d+ s left$/.test(left) && Number(left.match(/\d+/)[0]) >= 2;
  };
  try {
    await page.waitForFunction(baking, null, { timeout: 240000, polling: 100 });
  } finally {
    log(`seen: ${(await page.evaluate(() => [...window.__seen])).join(' ; ')}`);
  }
  await snap('export-progress.png');
}

/** main-window.png, multiview.png and history.png. */
async function readmeShots() {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('server-status').dataset.reachable === 'true');
  await dropImage(opts.image);
  await page.selectOption('#pipeline-type', '512');
  await page.selectOption('#texture-size', '512');
  await page.fill('#decimation-target', '20000');
  await page.uncheck('#remesh');
  await generate(42);
  await generate(7);
  await snapModel('sunset', 'main-window.png');

  await page.click('#mode-multiview');
  const views = opts.views.split(',');
  for (let i = 0; i < views.length; i += 1) await drop(`.slot[data-index="${i}"]`, views[i]);
  await page.click('#add-view');
  await page.waitForTimeout(300);
  await snap('multiview.png');

  await page.click('#mode-image');
  await page.selectOption('#view-mode', 'clay');
  await page.locator('#history-list li.job').last().getByRole('button', { name: /^Open/ }).click();
  await page.waitForTimeout(800);
  await snap('history.png');
}

try {
  const shots = opts.models ? modelsPanel : opts.fast ? fastTab : opts['first-start'] ? firstStart
    : opts['export-progress'] ? exportProgress : readmeShots;
  await shots();
} finally {
  await browser.close();
}
