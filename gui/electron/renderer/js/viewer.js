// The Three.js model viewer: PMREM environment lighting, orbit controls, material channel views
// (PBR, base colour, roughness, metallic, normals, clay, wireframe, UV checker), backface highlight,
// grid/axes, turntable and mesh statistics. Renders on demand so an idle window costs nothing.

import * as THREE from '../vendor/three/three.module.min.js';
import { GLTFLoader } from '../vendor/three/addons/GLTFLoader.js';
import { OrbitControls } from '../vendor/three/addons/OrbitControls.js';
import { RoomEnvironment } from '../vendor/three/addons/RoomEnvironment.js';

// The viewer's modes (id → the label of the View menu); `displayMaterial` makes each one's material.
export const VIEW_MODES = { pbr: 'PBR', basecolor: 'Base colour', roughness: 'Roughness', metallic: 'Metallic',
  normals: 'Normals', clay: 'Clay', wireframe: 'Wireframe', uv: 'UV checker' };
export const ENVIRONMENTS = { studio: 'Studio', sunset: 'Sunset', overcast: 'Overcast', neutral: 'Neutral' };

const CHANNEL_VERTEX = `
varying vec2 vUv;
void main() {
  vUv = uv;
  gl_Position = projectionMatrix * modelViewMatrix * vec4(position, 1.0);
}`;
// glTF packs roughness in G and metalness in B of metallicRoughnessTexture; factors multiply.
const CHANNEL_FRAGMENT = `
uniform sampler2D map;
uniform bool hasMap;
uniform float factor;
uniform int channel;
varying vec2 vUv;
void main() {
  float v = factor;
  if (hasMap) {
    vec4 t = texture2D(map, vUv);
    v *= channel == 1 ? t.g : t.b;
  }
  gl_FragColor = vec4(vec3(v), 1.0);
}`;
const SKY_VERTEX = `
varying vec3 vDir;
void main() {
  vDir = normalize(position);
  gl_Position = projectionMatrix * modelViewMatrix * vec4(position, 1.0);
}`;
const SKY_FRAGMENT = `
uniform vec3 top;
uniform vec3 horizon;
uniform vec3 ground;
varying vec3 vDir;
void main() {
  float h = vDir.y;
  vec3 c = h > 0.0 ? mix(horizon, top, pow(h, 0.6)) : mix(horizon, ground, pow(-h, 0.4));
  gl_FragColor = vec4(c, 1.0);
}`;

function gradientScene({ top, horizon, ground, sun = null }) {
  const scene = new THREE.Scene();
  const sky = new THREE.Mesh(new THREE.SphereGeometry(10, 32, 16), new THREE.ShaderMaterial({
    side: THREE.BackSide, vertexShader: SKY_VERTEX, fragmentShader: SKY_FRAGMENT,
    uniforms: { top: { value: new THREE.Color(...top) }, horizon: { value: new THREE.Color(...horizon) },
      ground: { value: new THREE.Color(...ground) } },
  }));
  scene.add(sky);
  if (sun) {
    const disc = new THREE.Mesh(new THREE.SphereGeometry(sun.size, 16, 8), new THREE.MeshBasicMaterial({ color: new THREE.Color(...sun.color) }));
    disc.position.set(...sun.position);
    scene.add(disc);
  }
  return scene;
}

function isSoftwareRenderer(renderer) {
  const gl = renderer.getContext();
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  return /swiftshader|llvmpipe|software|softpipe/i.test(String(name));
}

function checkerTexture() {
  const size = 512;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d');
  const cells = 8;
  const cell = size / cells;
  for (let y = 0; y < cells; y += 1) {
    for (let x = 0; x < cells; x += 1) {
      ctx.fillStyle = (x + y) % 2 ? '#2b2f36' : '#d9dde3';
      ctx.fillRect(x * cell, y * cell, cell, cell);
      ctx.fillStyle = (x + y) % 2 ? '#8db4ff' : '#c0392b';
      ctx.font = `${cell * 0.32}px sans-serif`;
      ctx.fillText(`${String.fromCharCode(65 + x)}${y + 1}`, x * cell + cell * 0.22, y * cell + cell * 0.6);
    }
  }
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  texture.flipY = false; // glTF's UV convention, as GLTFLoader uses for the model's own textures
  texture.wrapS = texture.wrapT = THREE.RepeatWrapping;
  texture.anisotropy = 4;
  return texture;
}

export class Viewer {
  constructor(canvas, container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.renderer.toneMapping = THREE.ACESFilmicToneMapping;
    this.renderer.setClearColor(0x000000, 0);

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(40, 1, 0.01, 100);
    this.camera.position.set(1.2, 0.8, 1.8);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = true;
    this.controls.autoRotateSpeed = 2.0;
    this.controls.addEventListener('change', () => this.requestRender());

    this.pmrem = new THREE.PMREMGenerator(this.renderer);
    // A software renderer (SwiftShader, llvmpipe) takes seconds per 256² environment; 64² looks the same on a model.
    this.envSize = isSoftwareRenderer(this.renderer) ? 64 : 256;
    this.envMaps = {};
    this.grid = new THREE.GridHelper(2, 20, 0x59606b, 0x363b43);
    this.axes = new THREE.AxesHelper(0.5);
    this.axes.visible = false;
    this.scene.add(this.grid, this.axes);

    this.model = null;
    this.meshes = [];
    this.materialCache = new Map();
    this.mode = 'pbr';
    this.backfaces = false;
    this.checker = null;
    this.dirty = true;
    this.setEnvironment('studio');

    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.resetView();
    this.renderer.setAnimationLoop(() => this.tick());
  }

  requestRender() {
    this.dirty = true;
  }

  tick() {
    const moved = this.controls.update();
    if (moved || this.dirty || this.controls.autoRotate) {
      this.dirty = false;
      this.renderer.render(this.scene, this.camera);
    }
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }

  environmentMap(name) {
    if (!this.envMaps[name]) {
      const scenes = {
        studio: () => new RoomEnvironment(),
        sunset: () => gradientScene({ top: [0.18, 0.28, 0.55], horizon: [1.0, 0.62, 0.35], ground: [0.12, 0.1, 0.09],
          sun: { size: 0.9, color: [12, 8, 4.5], position: [6, 1.8, -6] } }),
        overcast: () => gradientScene({ top: [0.95, 0.96, 1.0], horizon: [0.75, 0.77, 0.8], ground: [0.25, 0.25, 0.26] }),
        neutral: () => gradientScene({ top: [0.6, 0.6, 0.6], horizon: [0.6, 0.6, 0.6], ground: [0.6, 0.6, 0.6] }),
      };
      const scene = scenes[name]();
      this.envMaps[name] = this.pmrem.fromScene(scene, name === 'studio' ? 0.04 : 0, 0.1, 100, { size: this.envSize }).texture;
      scene.traverse((o) => {
        o.geometry?.dispose();
        o.material?.dispose();
      });
    }
    return this.envMaps[name];
  }

  setEnvironment(name) {
    if (!ENVIRONMENTS[name]) throw new Error(`Unknown environment ${name}`);
    this.environment = name;
    this.scene.environment = this.environmentMap(name);
    this.requestRender();
  }

  setGrid(on) {
    this.grid.visible = on;
    this.requestRender();
  }

  setAxes(on) {
    this.axes.visible = on;
    this.requestRender();
  }

  setTurntable(on) {
    this.controls.autoRotate = on;
    this.requestRender();
  }

  setBackfaces(on) {
    this.backfaces = on;
    for (const mesh of this.meshes) mesh.userData.backface.visible = on;
    this.applyMode();
  }

  /** Parse GLB bytes and show the model; returns its statistics. */
  async load(bytes) {
    const loader = new GLTFLoader();
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const gltf = await new Promise((resolve, reject) => loader.parse(buffer, '', resolve, reject));
    this.clear();
    this.model = gltf.scene;
    const found = [];
    this.model.traverse((o) => {
      if (o.isMesh) found.push(o);
    });
    for (const o of found) {
      // Shading needs normals; a GLB written without them gets smooth ones here.
      if (!o.geometry.attributes.normal) o.geometry.computeVertexNormals();
      o.userData.original = o.material;
      const back = new THREE.Mesh(o.geometry, new THREE.MeshBasicMaterial({ color: 0xff3b5c, side: THREE.BackSide }));
      back.visible = this.backfaces;
      back.raycast = () => {};
      o.userData.backface = back;
      o.add(back);
      this.meshes.push(o);
    }
    this.scene.add(this.model);
    this.applyMode();
    this.resetView();
    return this.stats(bytes.byteLength);
  }

  clear() {
    if (!this.model) return;
    this.scene.remove(this.model);
    const textures = new Set();
    const materials = new Set(this.materialCache.values());
    for (const o of this.meshes) {
      o.geometry.dispose();
      for (const m of [o.userData.original, o.userData.backface?.material].flat()) if (m) materials.add(m);
    }
    for (const m of materials) {
      for (const value of Object.values(m)) if (value?.isTexture && value !== this.checker) textures.add(value);
      for (const u of Object.values(m.uniforms || {})) if (u.value?.isTexture) textures.add(u.value);
      m.dispose();
    }
    for (const t of textures) t.dispose();
    this.materialCache.clear();
    this.model = null;
    this.meshes = [];
    this.requestRender();
  }

  stats(fileBytes) {
    let vertices = 0;
    let faces = 0;
    let texture = 0;
    for (const mesh of this.meshes) {
      const g = mesh.geometry;
      vertices += g.attributes.position.count;
      faces += (g.index ? g.index.count : g.attributes.position.count) / 3;
      for (const m of [mesh.userData.original].flat()) {
        for (const key of ['map', 'metalnessMap', 'roughnessMap', 'normalMap', 'emissiveMap']) {
          const img = m[key]?.image;
          if (img) texture = Math.max(texture, img.width || 0, img.height || 0);
        }
      }
    }
    return { vertices, faces: Math.round(faces), texture, fileBytes };
  }

  displayMaterial(mesh, mode) {
    const key = `${mesh.uuid}:${mode}`;
    if (this.materialCache.has(key)) return this.materialCache.get(key);
    const original = Array.isArray(mesh.userData.original) ? mesh.userData.original[0] : mesh.userData.original;
    let material;
    switch (mode) {
      case 'pbr':
        material = mesh.userData.original;
        break;
      case 'basecolor':
        material = new THREE.MeshBasicMaterial({ map: original.map || null, color: original.color?.clone() ?? 0xffffff,
          transparent: original.transparent, alphaTest: original.alphaTest, toneMapped: false });
        break;
      case 'roughness':
      case 'metallic': {
        const map = mode === 'roughness' ? original.roughnessMap : original.metalnessMap;
        const factor = mode === 'roughness' ? original.roughness ?? 1 : original.metalness ?? 0;
        material = new THREE.ShaderMaterial({
          vertexShader: CHANNEL_VERTEX, fragmentShader: CHANNEL_FRAGMENT,
          uniforms: { map: { value: map || null }, hasMap: { value: Boolean(map) }, factor: { value: factor },
            channel: { value: mode === 'roughness' ? 1 : 2 } },
        });
        break;
      }
      case 'normals':
        material = new THREE.MeshNormalMaterial({ normalMap: original.normalMap || null,
          normalScale: original.normalScale?.clone() ?? new THREE.Vector2(1, 1) });
        break;
      case 'clay':
        material = new THREE.MeshStandardMaterial({ color: 0xc9c2b6, roughness: 0.72, metalness: 0 });
        break;
      case 'wireframe':
        material = new THREE.MeshBasicMaterial({ color: 0x8db4ff, wireframe: true, toneMapped: false });
        break;
      case 'uv':
        this.checker ??= checkerTexture();
        material = new THREE.MeshBasicMaterial({ map: this.checker, toneMapped: false });
        break;
      default:
        throw new Error(`Unknown view mode ${mode}`);
    }
    this.materialCache.set(key, material);
    return material;
  }

  setMode(mode) {
    if (!(mode in VIEW_MODES)) throw new Error(`Unknown view mode ${mode}`);
    this.mode = mode;
    this.applyMode();
  }

  applyMode() {
    for (const mesh of this.meshes) {
      const material = this.displayMaterial(mesh, this.mode);
      for (const m of [material].flat()) {
        m.userData.side ??= m.side;
        m.side = this.backfaces ? THREE.FrontSide : m.userData.side;
        m.needsUpdate = true;
      }
      mesh.material = material;
    }
    this.requestRender();
  }

  hasUv() {
    return this.meshes.some((m) => m.geometry.attributes.uv);
  }

  /** Frame the model: centre the orbit on it, fit it in view, put the grid under it. */
  resetView() {
    this.controls.autoRotate = this.controls.autoRotate && Boolean(this.model);
    const box = this.model ? new THREE.Box3().setFromObject(this.model) : new THREE.Box3(
      new THREE.Vector3(-0.5, 0, -0.5), new THREE.Vector3(0.5, 1, 0.5));
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const radius = Math.max(sphere.radius, 1e-3);
    const distance = radius / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2)) * 1.1;
    const direction = new THREE.Vector3(0.55, 0.35, 1).normalize();
    this.controls.target.copy(sphere.center);
    this.camera.position.copy(sphere.center).addScaledVector(direction, distance);
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.updateProjectionMatrix();
    const scale = Math.max(radius * 2.5, 0.5) / 2;
    this.grid.scale.setScalar(scale);
    this.grid.position.set(sphere.center.x, box.min.y, sphere.center.z);
    this.axes.scale.setScalar(radius);
    this.axes.position.copy(this.grid.position);
    this.controls.update();
    this.requestRender();
  }
}
