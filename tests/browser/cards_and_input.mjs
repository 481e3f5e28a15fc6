// The job cards and the input in headless Chromium, against the fake engines (tests/server/serve_fake.py):
// a fully transparent image is refused before upload, an opaque one shows the engine's cut-out (or its refusal)
// before Generate, the Advanced fields explain themselves, the device note follows the config, the job being
// watched opens when done (also one chosen in the queue, and after a reload), history cards show the result's
// picture and the job's name, and Use settings restores the picture. Driven by test_cards_and_input.py:
//
//   node tests/browser/cards_and_input.mjs --url URL --opaque A.png --transparent B.png --empty C.png --out DIR

import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS, dropFile } from '../../tools/browser_page.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const { chromium } = createRequire(join(ROOT, 'package.json'))('playwright-core');
const { values: opts } = parseArgs({ options: {
  url: { type: 'string' }, opaque: { type: 'string' }, transparent: { type: 'string' }, empty: { type: 'string' },
  out: { type: 'string', default: 'test-artifacts/browser-cards' },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' },
} });
mkdirSync(opts.out, { recursive: true });
const started = Date.now();
const log = (m) => console.log(`[cards ${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`);
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const problems = [];
page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
const text = (selector) => page.locator(selector).textContent();
const note = () => text('#image-note');
const card = (list, id) => page.locator(`#${list} li.job[data-job-id="${id}"]`);

async function ready() {
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById('server-status').dataset.reachable === 'true');
}

/** Generate and return the new job's id (the newest card of the queue or the history). */
async function generate(seed) {
  await page.fill('#seed', String(seed));
  await page.waitForFunction(() => !document.getElementById('generate').disabled);
  const before = await page.evaluate(() => [...document.querySelectorAll('li.job')].map((li) => li.dataset.jobId));
  await page.click('#generate');
  const handle = await page.waitForFunction((known) => [...document.querySelectorAll('li.job')]
    .map((li) => li.dataset.jobId).find((id) => !known.includes(id)), before);
  return handle.jsonValue();
}

const opened = () => page.evaluate(() => document.getElementById('viewport').dataset.jobId);
const openedIs = (id) => page.waitForFunction((want) => {
  const viewport = document.getElementById('viewport');
  return viewport.dataset.loaded === 'true' && viewport.dataset.jobId === want;
}, id, { timeout: 60000 });

try {
  await page.goto(opts.url);
  await ready();
  const config = await page.evaluate(() => fetch('/api/config').then((r) => r.json()));

  // The device note and the Advanced fields' explanations come from the config.
  const note0 = config.engines.trellis2.device_note;
  check(await page.locator('#device-note').isVisible() === Boolean(note0), `the device note shows exactly when the config has one (${note0})`);
  if (note0) check(await text('#device-note') === note0, 'the device note is the config\'s line');
  await page.locator('#advanced summary').click();
  const sampler = config.engines.trellis2.params.shape_slat_sampler_params;
  const help = await page.$$eval('#sampler-help dd', (dds) => dds.map((d) => d.textContent));
  check(JSON.stringify(help) === JSON.stringify(Object.values(sampler.fields).map((f) => f.description)),
    `one line per sampler field, the config's words: ${help}`);
  check(await page.locator('#sampler-fields .stage-help').first().textContent() === config.engines.trellis2.params.sparse_structure_sampler_params.description,
    'each stage says what it samples');
  const described = await page.$$eval('#sampler-fields input', (inputs) => inputs.every((i) => document.getElementById(i.getAttribute('aria-describedby'))));
  check(described, 'every sampler input is described by its line');
  await page.locator('#advanced summary').click();
  await page.screenshot({ path: join(opts.out, '01-start.png') });

  // A fully transparent image is refused before upload, with one line.
  let uploads = 0;
  page.on('request', (r) => { if (r.method() === 'POST' && /\/api\/(generate|preview)\//.test(r.url())) uploads += 1; });
  await dropFile(page, '#dropzone', opts.empty);
  await page.waitForFunction(() => /fully transparent/.test(document.getElementById('image-note').textContent));
  check(!(await page.locator('#preview').isVisible()) && await page.locator('#generate').isDisabled(), 'nothing to generate from');
  check(!(await note()).includes('\n') && uploads === 0, 'one line, and nothing was sent');
  log('a fully transparent image is refused');

  // An opaque image: the cut-out of the Fast engine (plain background) is shown; the Image engine (no model)
  // refuses it, and Generate says why; back on Fast it is shown again.
  await page.click('#mode-fast');
  check(!(await page.locator('#device-note').isVisible()), 'no device note for the Fast drafts');
  await dropFile(page, '#dropzone', opts.opaque);
  await page.waitForSelector('#image-note[data-cutout="shown"]');
  check(/background is removed as shown/.test(await note()), `the note says the cut-out is shown: ${await note()}`);
  check(/cut-out/.test(await page.getAttribute('#preview', 'alt')), 'the preview is the cut-out');
  await page.screenshot({ path: join(opts.out, '02-cutout.png') });
  await page.click('#cutout-toggle');
  check(/Selected image/.test(await page.getAttribute('#preview', 'alt')) && await text('#cutout-toggle') === 'Show cut-out', 'the original can be seen again');
  await page.click('#cutout-toggle');
  await page.click('#mode-image');
  await page.waitForSelector('#image-note[data-cutout="refused"]');
  check(/no background-removal model/.test(await note()) && await page.locator('#generate').isDisabled(), 'refused where no cut-out can be made');
  check(/no background-removal model/.test(await text('#form-error')), 'the form says why Generate is off');
  await page.click('#mode-fast');
  await page.waitForSelector('#image-note[data-cutout="shown"]');
  log('the cut-out is previewed, per engine');

  // The job just queued is watched and opens when it is done; its card shows the result and the job's name.
  const first = await generate(11);
  await page.waitForSelector(`#queue-list li.job[data-job-id="${first}"] .watching`).catch(() => {});
  await openedIs(first);
  const done = card('history-list', first);
  await page.waitForFunction((id) => {
    const img = document.querySelector(`#history-list li.job[data-job-id="${id}"] img.thumb`);
    return img?.complete && img.naturalWidth > 0;
  }, first);
  check(/\/thumbnail\.png/.test(await done.locator('img.thumb').getAttribute('src')), 'the card shows the picture of the result');
  check(await done.locator('.title .name').textContent() === 'object_on_white', 'the card is named after the image');
  check(/Fast · seed 11/.test(await done.locator('.meta.engine').textContent()), 'with the engine and seed beneath');
  log('the watched job opened; its card has the result picture and the name');

  // A job chosen in the queue opens when done, not the one queued after it.
  await page.click('#mode-image');
  await dropFile(page, '#dropzone', opts.transparent);
  await page.waitForFunction(() => /has transparency/.test(document.getElementById('image-note').textContent));
  const second = await generate(21);
  const third = await generate(22);
  await card('queue-list', third).locator('.watching').waitFor();
  await card('queue-list', second).getByRole('button', { name: /when it is done/ }).click();
  await card('queue-list', second).locator('.watching').waitFor();
  check(await card('queue-list', third).getByRole('button', { name: /when it is done/ }).count() === 1, 'only one job is watched');
  await page.screenshot({ path: join(opts.out, '03-watching.png') });
  await openedIs(second);
  await page.waitForSelector(`#history-list li.job[data-job-id="${third}"]`, { timeout: 60000 });
  await page.waitForTimeout(1500);
  check(await opened() === second, 'the job queued later did not take the viewer');
  log('the job chosen in the queue opened when done');

  // After a reload, the job watched before it still opens when done.
  const fourth = await generate(31);
  await page.reload();
  await ready();
  await openedIs(fourth);
  log('after a reload the watched job opened');

  // Use settings brings back the picture too (and the engine, the seed).
  await card('history-list', first).getByRole('button', { name: /Use settings/ }).click();
  await page.waitForFunction(() => /object_on_white\.png/.test(document.getElementById('image-note').textContent));
  check(await page.getAttribute('#mode-fast', 'aria-selected') === 'true' && await page.inputValue('#seed') === '11', 'the engine and the seed come back');
  await page.waitForSelector('#image-note[data-cutout="shown"]');
  check(await page.locator('#preview').isVisible(), 'the picture is back in the input');
  await page.screenshot({ path: join(opts.out, '04-use-settings.png') });
  log('Use settings restored the picture');

  // Refine the Fast draft: a TRELLIS.2 job, watched and opened when done, whose card names its draft; a
  // TRELLIS.2 job offers no Refine.
  const known = await page.evaluate(() => [...document.querySelectorAll('li.job')].map((li) => li.dataset.jobId));
  await card('history-list', first).getByRole('button', { name: /^Refine/ }).click();
  const refined = await (await page.waitForFunction((ids) => [...document.querySelectorAll('li.job')]
    .map((li) => li.dataset.jobId).find((id) => !ids.includes(id)), known)).jsonValue();
  await openedIs(refined);
  const final = card('history-list', refined);
  check(/Refined from object_on_white/.test(await final.locator('.meta.draft').textContent()), 'the refined card names its draft');
  check(/seed 11/.test(await final.locator('.meta.engine').textContent()), 'with the draft\'s seed');
  check(await final.getByRole('button', { name: /^Refine/ }).count() === 0, 'a TRELLIS.2 job is not refined again');
  log('the draft was refined');

  check(problems.length === 0, `no page errors (${problems.join(' | ')})`);
  log('all checks passed');
} catch (err) {
  await page.screenshot({ path: join(opts.out, '99-failure.png') }).catch(() => {});
  console.error(err.stack || String(err));
  if (problems.length) console.error(`page problems: ${problems.join(' | ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
