// The renderer's wording helpers (plain ES module, no DOM needed).
import test from 'node:test';
import assert from 'node:assert/strict';
import { bytes, duration, explainError, stageName, toDate } from '../renderer/js/format.js';

test('server stage ids read as words with the config\'s names, unknown ones stay readable', () => {
  const names = { sparse_structure: 'Sampling the structure', export: 'Exporting', 'uv unwrap': 'unwrapping UVs' };
  assert.equal(stageName('sparse_structure', names), 'Sampling the structure');
  assert.equal(stageName('export:uv unwrap', names), 'Exporting: unwrapping UVs');
  assert.equal(stageName('export:uv_unwrap', names), 'Exporting: uv unwrap');
  assert.equal(stageName('something_new', names), 'Something new');
  assert.equal(stageName('tex_slat'), 'Tex slat');
  assert.equal(stageName(''), '');
});

test('durations and sizes', () => {
  assert.equal(duration(4.4), '4 s');
  assert.equal(duration(75), '1 min 15 s');
  assert.equal(duration(3720), '1 h 02 min');
  assert.equal(duration(null), '');
  assert.equal(bytes(512), '512 B');
  assert.equal(bytes(1536), '1.5 KB');
  assert.equal(bytes(5 * 2 ** 20), '5.0 MB');
});

test('server timestamps: epoch seconds or ISO text', () => {
  assert.equal(toDate(1700000000).toISOString(), '2023-11-14T22:13:20.000Z');
  assert.equal(toDate('2024-01-02T03:04:05Z').getUTCHours(), 3);
  assert.equal(toDate('not a date'), null);
});

test('errors come with the hint of the server\'s error table', () => {
  const table = { out_of_memory: { status: null, message: 'The GPU ran out of memory.', hint: 'Choose 512.' } };
  assert.deepEqual(explainError({ code: 'out_of_memory', message: 'CUDA OOM at step 3' }, table),
    { text: 'CUDA OOM at step 3', fix: 'Choose 512.' });
  assert.equal(explainError({ code: 'out_of_memory' }, table).text, 'The GPU ran out of memory.');
  assert.deepEqual(explainError({ code: 'whatever', message: 'The image is empty.' }, table),
    { text: 'The image is empty.', fix: '' });
  assert.equal(explainError(null).text, 'Something went wrong.');
});
