// The renderer's job and pixel helpers (plain ES modules, no DOM needed).
import test from 'node:test';
import assert from 'node:assert/strict';
import { cardPicture, inputFileName, inputUrls, jobName, picturesResult } from '../renderer/js/jobinfo.js';
import { alphaSummary } from '../renderer/js/pixels.js';

const base = '/api/jobs/abc/files/';
const job = {
  params: { name: 'chair', seed: 3 },
  preview: `${base}preview.png`,
  inputs: [`${base}input_0.png`, `${base}input_1.png`, `${base}preview.png`],
  result: { thumbnail: `${base}thumbnail.png` },
};

test('a card shows the result picture, else the input preview', () => {
  assert.equal(cardPicture(job), `${base}thumbnail.png`);
  assert.ok(picturesResult(job));
  const older = { ...job, result: { thumbnail: null } };
  assert.equal(cardPicture(older), `${base}preview.png`);
  assert.ok(!picturesResult(older));
  assert.equal(cardPicture({ inputs: [`${base}input_0.png`] }), `${base}input_0.png`);
  assert.equal(cardPicture({}), null);
});

test('a job is named by its name parameter', () => {
  assert.equal(jobName(job), 'chair');
  assert.equal(jobName({ params: { seed: 1 } }), '');
  assert.equal(jobName({ params: { name: null } }), '');
});

test('the inputs come back in order, without the preview, named after the job', () => {
  assert.deepEqual(inputUrls(job), [`${base}input_0.png`, `${base}input_1.png`]);
  assert.equal(inputFileName(job, 0), 'chair.png');
  assert.equal(inputFileName(job, 1), 'chair-2.png');
  assert.equal(inputFileName({ params: {} }, 0), 'input-1.png');
});

test('fully transparent, partly transparent and opaque pixels', () => {
  const pixels = (alphas) => Uint8ClampedArray.from(alphas.flatMap((a) => [10, 20, 30, a]));
  assert.deepEqual(alphaSummary(pixels([0, 0, 0, 0])), { transparent: true, visible: false });
  assert.deepEqual(alphaSummary(pixels([0, 255, 0, 0])), { transparent: true, visible: true });
  assert.deepEqual(alphaSummary(pixels([255, 255, 255, 255])), { transparent: false, visible: true });
  assert.deepEqual(alphaSummary(pixels([1, 1])), { transparent: true, visible: true });
});
