// Reads the renderer's menus as a person sees them (tabs, pipeline types, texture sizes, formats, view modes)
// and prints them as JSON: driven by tests/browser/test_vocabulary_menus.py.
//
//   node tests/browser/menus.mjs --url http://127.0.0.1:PORT

import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHROMIUM_ARGS } from '../../tools/browser_page.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const { chromium } = createRequire(join(ROOT, 'package.json'))('playwright-core');
const { values: opts } = parseArgs({ options: { url: { type: 'string' },
  chromium: { type: 'string', default: process.env.GENESIS_CHROMIUM || '/usr/bin/chromium' } } });

const browser = await chromium.launch({ executablePath: opts.chromium,
  args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(opts.url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
  const menus = await page.evaluate(() => {
    const options = (id) => [...document.getElementById(id).options].map((o) => ({ value: o.value, label: o.textContent }));
    return {
      tabs: [...document.querySelectorAll('#mode-tabs [role="tab"]')].map((t) => ({ id: t.id, label: t.textContent,
        disabled: t.getAttribute('aria-disabled') === 'true' })),
      pipeline_types: options('pipeline-type'),
      texture_sizes: options('texture-size'),
      export_texture_sizes: options('ex-texture'),
      export_formats: options('ex-format'),
      view_modes: options('view-mode'),
      decimation: ['min', 'max', 'value'].map((k) => document.getElementById('decimation-target')[k]),
      sampler_inputs: document.querySelectorAll('#sampler-fields input').length,
    };
  });
  console.log(JSON.stringify({ menus, problems }));
} finally {
  await browser.close();
}
