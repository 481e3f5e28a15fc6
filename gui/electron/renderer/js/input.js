// Image input: drag-drop, file picker (native in the desktop app), paste; a checkerboard preview so
// alpha is visible; a fully transparent image is refused before upload, and an opaque one shows the cut-out the
// engine will make (POST /api/preview/cutout) before Generate; and the multi-view slots (front/back/left/right
// plus extras, reorderable).

import { desktop } from './desktop.js';
import { alphaSummary } from './pixels.js';

const ACCEPTED = ['image/png', 'image/jpeg', 'image/webp'];
const NAMED_VIEWS = ['Front', 'Back', 'Left', 'Right'];
const $ = (id) => document.getElementById(id);

/** Check a file is an image we can send (at most `maxBytes`); returns an error sentence or null. */
export function rejectReason(file, maxBytes) {
  if (!file) return 'No file was given.';
  if (!ACCEPTED.includes(file.type)) return `${file.name || 'This file'} is not a PNG, JPEG or WebP image.`;
  if (file.size === 0) return `${file.name || 'This file'} is empty.`;
  if (file.size > maxBytes) return `${file.name || 'This file'} is larger than the server's limit of ${Math.round(maxBytes / 2 ** 20)} MB.`;
  return null;
}

/** Whether the image has real transparency (then it is used as-is; otherwise the background is removed) and
 * anything visible at all (`alphaSummary`), with its size. */
export async function hasTransparency(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, 256 / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, w, h);
  const { data } = ctx.getImageData(0, 0, w, h);
  const { width, height } = bitmap;
  bitmap.close();
  return { ...alphaSummary(data), width, height };
}

/** The one line that refuses a fully transparent image. */
export const fullyTransparent = (file) => `${file.name || 'This image'} is fully transparent: there is nothing in it to make a model of.`;

function imageFilesFrom(dataTransfer) {
  const files = [];
  for (const item of dataTransfer?.items || []) {
    if (item.kind === 'file') {
      const f = item.getAsFile();
      if (f) files.push(f);
    }
  }
  if (!files.length) files.push(...(dataTransfer?.files || []));
  return files;
}

export class ImageInput {
  /** `maxBytes`: the server's upload limit; `cutout(file)`: the engine's cut-out of an opaque image (a PNG
   * blob, or an `ApiError`); the view counts come with `setMode`. */
  constructor({ onChange, onError, maxBytes, cutout }) {
    this.onChange = onChange;
    this.onError = onError;
    this.maxBytes = maxBytes;
    this.cutout = cutout;
    this.opaque = false; // the single image needs its background removed
    this.problem = ''; // why the single image cannot be used (no object can be separated), else ''
    this.cutoutRun = 0; // answers of older cut-out requests are dropped
    this.views = { min: 1, max: 1 };
    this.mode = 'image';
    this.file = null;
    this.slots = NAMED_VIEWS.map((label) => ({ label, file: null, url: null }));
    this.dragFrom = null;
    this.bindSingle();
    this.bindMulti();
    document.addEventListener('paste', (e) => this.paste(e));
    // A file dropped anywhere else goes to the current input instead of replacing the page.
    document.addEventListener('dragover', (e) => e.preventDefault());
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      const files = imageFilesFrom(e.dataTransfer);
      if (!files.length) return;
      if (this.mode === 'multiview') this.fillSlots(files);
      else this.setSingle(files[0]);
    });
    this.renderSlots();
  }

  /** `mode`: image (one picture) or multiview (`views.min` to `views.max` slots). */
  setMode(mode, views = { min: 1, max: 1 }) {
    this.mode = mode;
    this.views = views;
    this.renderSlots();
    $('single-input').hidden = mode === 'multiview';
    $('multi-input').hidden = mode !== 'multiview';
    this.onChange();
  }

  /** Put a job's input images back (Use settings): the single image, or the views from the first slot on. */
  async restore(files) {
    if (this.mode !== 'multiview') return this.setSingle(files[0]);
    for (const slot of this.slots) if (slot.url) URL.revokeObjectURL(slot.url);
    this.slots = NAMED_VIEWS.map((label) => ({ label, file: null, url: null }));
    this.fillSlots(files, 0);
    return undefined;
  }

  /** The files to send for the current mode, in order. */
  files() {
    if (this.mode === 'multiview') return this.slots.filter((s) => s.file).map((s) => s.file);
    return this.file ? [this.file] : [];
  }

  async pick(multiple) {
    if (desktop.available) {
      const picked = await desktop.pickImages();
      return picked.map((p) => new File([p.data], p.name, { type: p.type }));
    }
    return new Promise((resolve) => {
      const input = $('file-input');
      input.multiple = multiple;
      input.value = '';
      input.onchange = () => resolve([...input.files]);
      input.click();
    });
  }

  // ---- single image -------------------------------------------------------------------------
  bindSingle() {
    const zone = $('dropzone');
    $('cutout-toggle').addEventListener('click', () => this.toggleCutout());
    const choose = async () => this.setSingle((await this.pick(false))[0]);
    zone.addEventListener('click', choose);
    zone.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        choose();
      }
    });
    for (const target of [zone, $('generate-form')]) {
      target.addEventListener('dragover', (e) => {
        e.preventDefault();
        zone.classList.add('dragover');
      });
      target.addEventListener('dragleave', () => zone.classList.remove('dragover'));
    }
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      e.stopPropagation();
      zone.classList.remove('dragover');
      this.setSingle(imageFilesFrom(e.dataTransfer)[0]);
    });
  }

  async setSingle(file) {
    if (!file) return;
    const reason = rejectReason(file, this.maxBytes);
    if (reason) return this.onError(reason);
    const note = $('image-note');
    this.showPicture(file, `Selected image: ${file.name}`);
    this.file = file;
    this.opaque = false;
    this.problem = '';
    this.cutoutRun += 1;
    $('cutout-toggle').hidden = true;
    try {
      const info = await hasTransparency(file);
      if (!info.visible) {
        this.clearSingle();
        note.classList.add('warn');
        note.textContent = fullyTransparent(file);
      } else {
        note.classList.remove('warn');
        this.opaque = !info.transparent;
        this.described = `${file.name} · ${info.width}×${info.height}`;
        note.textContent = info.transparent ? `${this.described} · has transparency, used as-is.`
          : `${this.described} · opaque: removing the background…`;
      }
    } catch {
      this.clearSingle();
      note.classList.add('warn');
      note.textContent = `${file.name} could not be read as an image.`;
    }
    this.onChange();
    if (this.opaque) await this.previewCutout();
  }

  /** Show `blob` in the drop zone (the image, or its cut-out). */
  showPicture(blob, alt) {
    const preview = $('preview');
    if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.alt = alt;
    preview.hidden = false;
    $('dropzone').classList.add('has-image');
    $('dropzone-hint').hidden = true;
  }

  clearSingle() {
    this.file = null;
    this.opaque = false;
    $('preview').hidden = true;
    $('dropzone-hint').hidden = false;
    $('dropzone').classList.remove('has-image');
  }

  /** Ask the server for the engine's cut-out of the opaque image and show it; an image no object can be cut
   * out of is refused with the server's reason (`problem`). Called again when the engine changes. */
  async previewCutout() {
    const file = this.file;
    if (!file || !this.opaque || this.mode === 'multiview') return;
    const run = ++this.cutoutRun;
    const note = $('image-note');
    const toggle = $('cutout-toggle');
    toggle.hidden = true;
    note.classList.remove('warn');
    note.dataset.cutout = 'pending';
    try {
      const cut = await this.cutout(file);
      if (run !== this.cutoutRun) return;
      this.cut = cut;
      this.problem = '';
      this.showPicture(cut, `The cut-out of ${file.name} the model will be made from`);
      note.textContent = `${this.described} · opaque: the background is removed as shown.`;
      note.dataset.cutout = 'shown';
      toggle.textContent = 'Show original';
      toggle.hidden = false;
    } catch (err) {
      if (run !== this.cutoutRun) return;
      const refused = err?.code === 'invalid_image';
      this.problem = refused ? err.message : '';
      note.classList.toggle('warn', refused);
      note.textContent = refused ? err.message
        : `${this.described} · opaque: the background will be removed (no preview: ${err?.message || err}).`;
      note.dataset.cutout = refused ? 'refused' : 'unavailable';
    }
    this.onChange();
  }

  /** Between the cut-out and the original picture. */
  toggleCutout() {
    const toggle = $('cutout-toggle');
    const showCut = toggle.textContent !== 'Show original';
    if (showCut) this.showPicture(this.cut, `The cut-out of ${this.file.name} the model will be made from`);
    else this.showPicture(this.file, `Selected image: ${this.file.name}`);
    toggle.textContent = showCut ? 'Show original' : 'Show cut-out';
  }

  async paste(event) {
    if (event.target.closest?.('input, select, textarea')) return;
    const files = imageFilesFrom(event.clipboardData).filter((f) => f.type.startsWith('image/'));
    if (!files.length) return;
    event.preventDefault();
    if (this.mode === 'multiview') this.fillSlots(files);
    else this.setSingle(files[0]);
  }

  // ---- multi-view -------------------------------------------------------------------------------
  bindMulti() {
    $('add-view').addEventListener('click', () => {
      if (this.slots.length >= this.views.max) return;
      this.slots.push({ label: `Extra ${this.slots.length - NAMED_VIEWS.length + 1}`, file: null, url: null });
      this.renderSlots();
      this.onChange();
    });
  }

  setSlot(index, file) {
    const reason = rejectReason(file, this.maxBytes);
    if (reason) return this.onError(reason);
    const slot = this.slots[index];
    if (slot.url) URL.revokeObjectURL(slot.url);
    slot.file = file;
    slot.url = URL.createObjectURL(file);
    this.renderSlots();
    this.onChange();
    hasTransparency(file).then((info) => { // a fully transparent view is taken out again, with the reason
      if (info.visible || slot.file !== file) return;
      this.clearSlot(this.slots.indexOf(slot));
      this.onError(fullyTransparent(file));
    }).catch(() => {});
  }

  /** Put the first file into slot `start`, the others into the next empty slots (adding extras). */
  fillSlots(files, start = this.firstEmptySlot()) {
    let index = start;
    files.forEach((file, n) => {
      if (n > 0) {
        index += 1;
        while (index < this.slots.length && this.slots[index].file) index += 1;
      }
      if (index >= this.views.max) return;
      if (index >= this.slots.length) {
        this.slots.push({ label: `Extra ${this.slots.length - NAMED_VIEWS.length + 1}`, file: null, url: null });
      }
      this.setSlot(index, file);
    });
  }

  firstEmptySlot() {
    const empty = this.slots.findIndex((s) => !s.file);
    return empty === -1 ? this.slots.length : empty;
  }

  clearSlot(index) {
    const slot = this.slots[index];
    if (slot.url) URL.revokeObjectURL(slot.url);
    if (index >= NAMED_VIEWS.length) this.slots.splice(index, 1);
    else Object.assign(slot, { file: null, url: null });
    this.relabelExtras();
    this.renderSlots();
    this.onChange();
  }

  relabelExtras() {
    this.slots.forEach((slot, i) => {
      if (i >= NAMED_VIEWS.length) slot.label = `Extra ${i - NAMED_VIEWS.length + 1}`;
    });
  }

  /** Swap two slots' images (labels stay with their positions). */
  swap(a, b) {
    if (a === b || a < 0 || b < 0 || a >= this.slots.length || b >= this.slots.length) return;
    const keep = ['file', 'url'];
    for (const key of keep) [this.slots[a][key], this.slots[b][key]] = [this.slots[b][key], this.slots[a][key]];
    this.renderSlots();
    this.onChange();
    document.querySelector(`.slot[data-index="${b}"]`)?.focus();
  }

  renderSlots() {
    const list = $('slots');
    list.replaceChildren();
    this.slots.forEach((slot, index) => {
      const li = document.createElement('li');
      li.className = 'slot-item';
      const item = document.createElement('div');
      item.className = `slot checker${slot.file ? ' filled' : ''}`;
      item.dataset.index = String(index);
      item.tabIndex = 0;
      item.setAttribute('role', 'button');
      item.setAttribute('aria-describedby', 'slot-help');
      item.draggable = Boolean(slot.file);
      const label = document.createElement('span');
      label.className = 'slot-label';
      label.textContent = slot.label;
      item.append(label);
      li.append(item);
      if (slot.file) {
        const img = document.createElement('img');
        img.src = slot.url;
        img.alt = slot.file.name;
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'secondary small slot-remove';
        remove.textContent = '×';
        remove.setAttribute('aria-label', `Remove the ${slot.label} view`);
        remove.addEventListener('click', () => this.clearSlot(index));
        item.append(img);
        li.append(remove);
      } else {
        const hint = document.createElement('span');
        hint.className = 'slot-empty';
        hint.textContent = 'Drop or choose';
        item.append(hint);
      }
      const choose = async () => {
        const files = await this.pick(true);
        if (files.length) this.fillSlots(files, index);
      };
      item.addEventListener('click', choose);
      item.addEventListener('keydown', (e) => {
        if (e.target !== item) return;
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          choose();
        } else if (e.altKey && (e.key === 'ArrowLeft' || e.key === 'ArrowUp')) {
          e.preventDefault();
          this.swap(index, index - 1);
        } else if (e.altKey && (e.key === 'ArrowRight' || e.key === 'ArrowDown')) {
          e.preventDefault();
          this.swap(index, index + 1);
        } else if (e.key === 'Delete' && slot.file) {
          this.clearSlot(index);
        }
      });
      item.addEventListener('dragstart', (e) => {
        this.dragFrom = index;
        e.dataTransfer.effectAllowed = 'move';
        e.dataTransfer.setData('text/plain', `slot:${index}`);
      });
      item.addEventListener('dragover', (e) => {
        e.preventDefault();
        item.classList.add('dragover');
      });
      item.addEventListener('dragleave', () => item.classList.remove('dragover'));
      item.addEventListener('drop', (e) => {
        e.preventDefault();
        e.stopPropagation();
        item.classList.remove('dragover');
        const files = imageFilesFrom(e.dataTransfer).filter((f) => f.type);
        if (files.length) this.fillSlots(files, index);
        else if (this.dragFrom !== null) this.swap(this.dragFrom, index);
        this.dragFrom = null;
      });
      list.append(li);
    });
    $('add-view').disabled = this.slots.length >= this.views.max;
    const count = this.slots.filter((s) => s.file).length;
    $('multi-note').textContent = `${count} of ${this.slots.length} views filled · at least ${this.views.min} needed, up to ${this.views.max}.`;
  }
}
