'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { installElectronMock, freshRequire } = require('../testing/mock-electron');

test('preload exposes exactly the four desktop calls, under window.genesis', async () => {
  const electron = installElectronMock();
  freshRequire('../preload.js');
  assert.deepEqual(Object.keys(electron.exposed), ['genesis']);
  const api = electron.exposed.genesis;
  assert.deepEqual(Object.keys(api).sort(), ['backendUrl', 'openFolder', 'pickImages', 'saveFile']);
  assert.ok(Object.isFrozen(api));
  for (const fn of Object.values(api)) assert.equal(typeof fn, 'function');

  await api.pickImages();
  await api.saveFile('model.glb', new Uint8Array([1, 2]));
  await api.backendUrl();
  await api.openFolder();
  assert.deepEqual(electron.invoked.map((c) => c[0]),
    ['genesis:pick-images', 'genesis:save-file', 'genesis:backend-url', 'genesis:open-folder']);
  assert.deepEqual(electron.invoked[1][1], { name: 'model.glb', data: new Uint8Array([1, 2]) });
});

test('preload matches the channels main.js handles', () => {
  installElectronMock({ gotLock: false });
  const main = freshRequire('../main.js');
  assert.deepEqual(Object.values(main.CHANNELS).sort(),
    ['genesis:backend-url', 'genesis:open-folder', 'genesis:pick-images', 'genesis:save-file']);
});
