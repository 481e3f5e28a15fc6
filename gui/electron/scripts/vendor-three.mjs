// Copies the few three.js files the renderer uses from node_modules into renderer/vendor/three/,
// rewriting the addons' bare `three` imports to relative paths so the renderer needs no import map
// (an inline import map would weaken the Content-Security-Policy) and no build step.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, '..', 'node_modules', 'three');
const target = join(here, '..', 'renderer', 'vendor', 'three');

const CORE = ['build/three.core.min.js', 'build/three.module.min.js'];
const ADDONS = [
  'examples/jsm/loaders/GLTFLoader.js',
  'examples/jsm/controls/OrbitControls.js',
  'examples/jsm/environments/RoomEnvironment.js',
  'examples/jsm/utils/BufferGeometryUtils.js',
];

if (!existsSync(source)) {
  console.error('three is not installed in gui/electron/node_modules; run `npm install` there first.');
  process.exit(1);
}
mkdirSync(join(target, 'addons'), { recursive: true });
for (const file of CORE) copyFileSync(join(source, file), join(target, file.split('/').pop()));
for (const file of ADDONS) {
  const text = readFileSync(join(source, file), 'utf8')
    .replace(/^(\s*}?\s*(?:import\s.*)?)from 'three';/gm, "$1from '../three.module.min.js';")
    .replace(/from '\.\.\/utils\/BufferGeometryUtils\.js';/g, "from './BufferGeometryUtils.js';");
  const unresolved = text.split('\n').filter((line) => !/^\s*(\*|\/\/)/.test(line))
    .filter((line) => /from '(three[^']*|\.\.\/(?!three\.module\.min\.js)[^']*)';/.test(line));
  if (unresolved.length) throw new Error(`unresolved import in ${file}: ${unresolved[0]}`);
  writeFileSync(join(target, 'addons', file.split('/').pop()), text);
}
const version = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')).version;
writeFileSync(join(target, 'VERSION'), `three ${version} (copied from npm by scripts/vendor-three.mjs)\n`);
console.log(`vendored three ${version} into renderer/vendor/three`);
