// The Models panel in headless Chromium against a live server whose hub is tools/fake_hub.py (the tiny models,
// throttled): the missing-models line and its button, the list with states, Download all with a progress bar
// (bytes, speed, time left), cancel and resume, a gated model's licence link, error and token, the background
// model in use, and the engines becoming ready. Driven by tests/browser/test_models_panel.py:
//
//   node tests/browser/models_panel.mjs --url URL --token TOKEN --out test-artifacts/browser-models

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS } from '../../tools/browser_page.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const require = createRequire(join(ROOT, 'package.json'));
const { chromium } = require('playwright-core');
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { values: opts } = parseArgs({ options: {
  url: { type: 'string' }, token: { type: 'string' }, out: { type: 'string', default: 'test-artifacts/browser-models' },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' },
} });
mkdirSync(opts.out, { recursive: true });
const started = Date.now();
const log = (m) => console.log(`[models ${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`);
const check = (ok, message) => { if (!ok) throw new Error(`check failed: ${message}`); };

const PIPELINE = 'microsoft/TRELLIS.2-4B';
const GATED = 'facebook/dinov3-vitl16-pretrain-lvd1689m';
const BIREFNET = 'ZhengPeng7/BiRefNet';
const row = (id) => `#models-list li[data-repo="${id}"]`;

const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const problems = [];
page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
const shot = (name) => page.screenshot({ path: join(opts.out, `${name}.png`) });
const rowAttr = (id, name) => page.getAttribute(row(id), name);
const waitRow = (id, name, value, timeout = 60000) => page.waitForFunction(([sel, n, v]) =>
  document.querySelector(sel)?.getAttribute(n) === v, [row(id), `data-${name}`, value], { timeout });

try {
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('server-status').dataset.reachable === 'true');

  // 1. Nothing downloaded: one line says which engines need models, with a button to the panel.
  const note = page.locator('#fast-note');
  await note.waitFor({ state: 'visible' });
  const line = await page.textContent('#fast-note .note-line');
  const box = await page.locator('#fast-note .note-line').boundingBox();
  log(`missing-models line: ${line} (${box.height}px high)`);
  const listed = await page.evaluate(() => fetch('/api/models').then((r) => r.json()));
  const needed = listed.models.filter((m) => !m.background).length; // background removal is optional
  check(line === `Image and Multi-view need ${needed} more models.`, `the line says what is missing: ${line}`);
  check(box.height < 24, `the missing-models message is one line (${box.height}px)`);
  await page.click('#open-models-from-note');
  await page.waitForSelector('#models-dialog[open]');
  await page.waitForSelector(`${row(PIPELINE)}[data-state="missing"]`);
  const rows = await page.$$eval('#models-list li', (items) => items.map((li) => ({ id: li.dataset.repo,
    state: li.dataset.state, text: li.textContent, link: li.querySelector('.model-gate a')?.href || '' })));
  check(JSON.stringify(rows.map((r) => r.id)) === JSON.stringify(listed.models.map((m) => m.id)), 'the panel lists the server\'s models, in order');
  for (const model of listed.models) {
    const shown = rows.find((r) => r.id === model.id);
    check(shown.state === 'missing' && shown.text.includes(model.licence) && shown.text.includes(model.purpose), `${model.id}: state, licence and purpose shown`);
    check(model.gated === shown.text.includes('Gated'), `${model.id}: gated shown exactly when gated`);
    if (model.gated) check(shown.link === model.page, `${model.id}: the licence link is the model's page`);
  }
  check((await page.textContent('#hf-token-status')).startsWith('Not set'), 'the token is not set');
  await shot('01-models-missing');

  // 2. Download all: the running model shows a bar with bytes, speed and time left; the header says so too.
  await page.click('#models-download-all');
  await page.waitForFunction((sel) => /\/s · .* left/.test(document.querySelector(`${sel} .model-progress-text`)?.textContent || ''), row(PIPELINE), { timeout: 30000 });
  const progress = await page.textContent(`${row(PIPELINE)} .model-progress-text`);
  const header = await page.textContent('#models-open');
  log(`progress: ${progress}; header: ${header}`);
  check(/Downloading: [\d.]+ (KB|MB) of [\d.]+ MB · [\d.]+ (KB|MB)\/s · .+ left/.test(progress), `bytes, speed and time left: ${progress}`);
  check(/^Models · \d+%$/.test(header), `the header shows the download: ${header}`);
  check(Number(await page.getAttribute(`${row(PIPELINE)} [role="progressbar"]`, 'aria-valuenow')) >= 0, 'a progress bar');
  await shot('02-models-downloading');

  // 3. Cancel within two seconds; Resume continues and verifies.
  const asked = Date.now();
  await page.click(`${row(PIPELINE)} button[aria-label="Cancel ${PIPELINE}"]`);
  await waitRow(PIPELINE, 'task', 'cancelled', 5000);
  const cancelMs = Date.now() - asked;
  log(`cancelled after ${cancelMs} ms: ${await page.textContent(row(PIPELINE))}`);
  check(cancelMs < 2000, `cancel within two seconds (${cancelMs} ms)`);
  check(await rowAttr(PIPELINE, 'data-state') === 'partial', 'a cancelled download is partial');
  await page.click(`${row(PIPELINE)} button[aria-label="Resume ${PIPELINE}"]`);
  await waitRow(PIPELINE, 'state', 'verified');
  log('resumed and verified');

  // 4. The gated model fails with one line and its licence link until a token is saved.
  await waitRow(GATED, 'task', 'failed');
  const error = await page.textContent(`${row(GATED)} .model-error`);
  log(`gated: ${error}`);
  check(error.includes('accept its licence') && error.includes(GATED) && !error.includes('\n'), `one line for the gated model: ${error}`);
  await waitRow(BIREFNET, 'state', 'verified');
  check((await page.textContent(row(BIREFNET))).includes('In use'), 'the licence-clean background model is in use');
  check((await page.textContent('#background-status')) === `In use: ${BIREFNET}.`, 'the panel says which background model is in use');
  await page.fill('#hf-token', opts.token);
  await page.click('#hf-token-save');
  await page.waitForFunction(() => document.getElementById('hf-token-status').textContent.startsWith('Token set'));
  check(await page.inputValue('#hf-token') === '', 'the page does not keep the token');
  const served = await page.evaluate(() => fetch('/api/models').then((r) => r.text()));
  check(!served.includes(opts.token), 'the server never sends the token back');
  await page.click(`${row(GATED)} button[aria-label="Resume ${GATED}"], ${row(GATED)} button[aria-label="Download ${GATED}"]`);
  await waitRow(GATED, 'state', 'verified');
  log('gated model verified with the token');
  await shot('03-models-verified');

  // 5. Accessibility of the panel, then the engines that needed the models become ready.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run('#models-dialog', {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  writeFileSync(join(opts.out, 'axe-models.json'), JSON.stringify(result.violations, null, 2));
  const serious = result.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  check(serious.length === 0, `accessibility: ${serious.map((v) => `${v.id} at ${v.nodes.map((n) => n.target.join(' '))}`).join('; ')}`);
  await page.click('#models-close');
  await page.waitForFunction(() => document.getElementById('mode-image').getAttribute('aria-disabled') === 'false', null, { timeout: 40000 });
  // the line goes with the next health poll once every engine that needed the models has them
  const gone = await page.waitForFunction(() => document.getElementById('fast-note').hidden, null, { timeout: 20000 })
    .then(() => true, () => false);
  check(gone, 'the missing-models line is gone');
  log('TRELLIS.2 is ready');
  check(problems.length === 0, problems.join('; '));
  console.log('all checks passed');
} finally {
  await browser.close();
}
