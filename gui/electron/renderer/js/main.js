// Genesis renderer: wires the input, the settings form, the job list and the viewer to the REST API.

import { api, ApiError } from './api.js';
import { desktop } from './desktop.js';
import { bytes, count, duration, elapsedSeconds, explainError } from './format.js';
import { ImageInput } from './input.js';
import { ACTIVE, JobList, jobTitle } from './jobs.js';
import { buildSamplerFields, randomSeed, readParams, resetSamplerFields, writeParams } from './params.js';
import { ENVIRONMENTS, Viewer } from './viewer.js';

const $ = (id) => document.getElementById(id);
const ENGINE_OF_MODE = { image: 'image', multiview: 'multiview', fast: 'fast' };
const MODE_OF_ENGINE = { trellis2: 'image', image: 'image', multiview: 'multiview', fresnel: 'fast', fast: 'fast' };
const SERVER_ENGINE = { image: 'trellis2', multiview: 'multiview', fast: 'fresnel' };
const EXTENSIONS = { glb: 'glb', obj: 'zip', stl: 'stl', ply: 'ply' };

const app = {
  mode: 'image',
  health: null,
  viewer: null,
  current: null,
  lastSeed: null,
  watched: new Map(),
  pendingOpen: null,
  exportJob: null,
};

// ---- small UI helpers ------------------------------------------------------------------------------
let toastTimer = null;
function toast(message, { error = false } = {}) {
  const box = $('toast');
  box.textContent = message;
  box.classList.toggle('error', error);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, error ? 8000 : 3500);
}

function reportError(err, context) {
  const { text, fix } = explainError(err instanceof ApiError ? { code: err.code, message: err.message } : { message: String(err?.message || err) });
  toast(`${context}: ${text}${fix ? ` ${fix}` : ''}`, { error: true });
}

// ---- server status -----------------------------------------------------------------------------------
async function refreshHealth() {
  const status = $('server-status');
  try {
    app.health = await api.health();
    const where = desktop.available ? '' : ` · ${location.host}`;
    status.textContent = `Ready · ${app.health.device || 'unknown device'}${where}`;
    status.className = 'server-status ok';
  } catch (err) {
    app.health = null;
    status.textContent = 'Server not reachable';
    status.className = 'server-status bad';
    status.title = err.message;
  }
  updateModeAvailability();
  validate();
}

function engineState(mode) {
  const engines = app.health?.engines || {};
  return engines[SERVER_ENGINE[mode]] || { ready: false, reason: 'The server has not reported this engine.' };
}

function updateModeAvailability() {
  const fast = engineState('fast');
  const tab = $('mode-fast');
  tab.setAttribute('aria-disabled', String(!fast.ready));
  tab.title = fast.ready ? 'Fresnel: a fast one-step model' : `Not available: ${fast.reason || 'not ready'}`;
  const note = $('fast-note');
  const state = engineState(app.mode);
  note.hidden = state.ready || !app.health;
  note.textContent = state.ready ? '' : `This engine is not ready on the server: ${state.reason || 'unknown reason'}`;
}

// ---- modes --------------------------------------------------------------------------------------------
function setMode(mode, { focus = false } = {}) {
  if (mode === 'fast' && !engineState('fast').ready) {
    toast(`Fast mode is not available: ${engineState('fast').reason || 'the server says it is not ready'}.`);
    return;
  }
  app.mode = mode;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.dataset.mode === mode;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected && focus) tab.focus();
  }
  $('input-panel').setAttribute('aria-labelledby', `mode-${mode}`);
  $('pipeline-field').hidden = mode === 'fast';
  $('advanced').hidden = mode === 'fast';
  app.input.setMode(mode === 'multiview' ? 'multiview' : 'image');
  updateModeAvailability();
  validate();
}

function bindTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener('click', () => setMode(tab.dataset.mode));
    tab.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(tab);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      tabs.forEach((t) => { t.tabIndex = t === next ? 0 : -1; });
    });
  }
}

// ---- form ---------------------------------------------------------------------------------------------
function validate() {
  const { errors } = readParams(app.mode);
  const files = app.input?.files() || [];
  let problem = errors[0]?.message || '';
  if (!problem && app.mode === 'multiview' && files.length < 2) problem = 'Add at least two views.';
  if (!problem && app.mode !== 'multiview' && !files.length) problem = 'Add an image to start.';
  if (!problem && app.health && !engineState(app.mode).ready) problem = 'This engine is not ready on the server.';
  if (!problem && !app.health) problem = 'Waiting for the server…';
  $('form-error').textContent = problem;
  $('generate').disabled = Boolean(problem);
  return !problem;
}

async function submit(event) {
  event.preventDefault();
  if (!validate()) return;
  const { params } = readParams(app.mode);
  const button = $('generate');
  button.disabled = true;
  try {
    const { job_id: id } = await api.generate(ENGINE_OF_MODE[app.mode], app.input.files(), params);
    app.lastSeed = params.seed;
    $('seed-reuse').disabled = false;
    app.pendingOpen = id;
    jobs.update({ id, engine: SERVER_ENGINE[app.mode], state: 'queued', params, created_at: Date.now() / 1000, progress: 0 });
    watch(id);
    toast('Queued. You can keep working while it runs.');
    if ($('seed-auto').checked) $('seed').value = String(randomSeed());
  } catch (err) {
    $('form-error').textContent = explainError({ code: err.code, message: err.message }).text;
    reportError(err, 'Could not start the job');
  } finally {
    validate();
  }
}

function pipelineHint() {
  const type = $('pipeline-type').value;
  const times = [...jobs.jobs.values()]
    .filter((j) => j.state === 'succeeded' && j.params?.pipeline_type === type && elapsedSeconds(j) !== null)
    .map((j) => elapsedSeconds(j));
  const memory = [...jobs.jobs.values()]
    .filter((j) => j.params?.pipeline_type === type)
    .map((j) => Object.entries(j.result?.stats || {}).find(([k]) => /peak.*(mem|vram)/i.test(k))?.[1])
    .filter(Number.isFinite);
  const parts = [];
  if (times.length) {
    const sorted = times.sort((a, b) => a - b);
    parts.push(`About ${duration(sorted[Math.floor(sorted.length / 2)])} on this machine (${times.length} job${times.length > 1 ? 's' : ''})`);
  } else {
    parts.push('Time on this machine: measured after the first job');
  }
  if (memory.length) parts.push(`peak memory ${bytes(Math.max(...memory))}`);
  $('pipeline-hint').textContent = `${parts.join(', ')}.`;
}

function bindForm() {
  buildSamplerFields($('sampler-fields'));
  const form = $('generate-form');
  form.addEventListener('submit', submit);
  form.addEventListener('input', validate);
  form.addEventListener('change', validate);
  $('seed-random').addEventListener('click', () => {
    $('seed').value = String(randomSeed());
    validate();
  });
  $('seed-reuse').addEventListener('click', () => {
    if (app.lastSeed !== null) $('seed').value = String(app.lastSeed);
    validate();
  });
  $('sampler-reset').addEventListener('click', () => {
    resetSamplerFields();
    validate();
  });
  $('pipeline-type').addEventListener('change', pipelineHint);
}

// ---- jobs ---------------------------------------------------------------------------------------------
const jobs = new JobList({
  open: (job) => openJob(job),
  cancel: async (job) => {
    try {
      jobs.update(await api.cancel(job.id).then(() => api.job(job.id)));
      toast('Cancelled.');
    } catch (err) {
      reportError(err, 'Could not cancel');
    }
  },
  remove: (job) => removeJob(job),
  useSettings: (job) => {
    const mode = MODE_OF_ENGINE[job.engine] || 'image';
    if (mode !== app.mode) setMode(mode);
    writeParams(job.params);
    validate();
    toast(`Settings of ${jobTitle(job)} copied into the form.`);
  },
  exportJob: (job) => openExport(job),
});

const deleteArmed = new Map();
async function removeJob(job) {
  if (!deleteArmed.has(job.id)) {
    deleteArmed.set(job.id, setTimeout(() => deleteArmed.delete(job.id), 4000));
    toast('Click Delete again to remove this job and its files.');
    return;
  }
  clearTimeout(deleteArmed.get(job.id));
  deleteArmed.delete(job.id);
  try {
    await api.remove(job.id);
    jobs.remove(job.id);
    if (app.current?.id === job.id) {
      app.viewer?.clear();
      app.current = null;
      showStats(null);
    }
    toast('Deleted.');
  } catch (err) {
    reportError(err, 'Could not delete');
  }
}

function onJobUpdate(job) {
  const before = jobs.jobs.get(job.id);
  jobs.update(job);
  if (before?.state !== job.state && job.state === 'succeeded') {
    pipelineHint();
    if (app.pendingOpen === job.id) {
      app.pendingOpen = null;
      openJob(jobs.jobs.get(job.id));
    }
  }
  if (before?.state !== job.state && job.state === 'failed') {
    toast(`${jobTitle(job)} failed: ${explainError(job.error).text}`, { error: true });
  }
}

function watch(id) {
  if (app.watched.has(id)) return;
  app.watched.set(id, api.watch(id, onJobUpdate));
}

async function poll() {
  try {
    const list = await api.jobs();
    const items = Array.isArray(list) ? list : list.jobs || [];
    const known = new Map(jobs.jobs);
    jobs.setAll(items);
    for (const job of items) {
      const before = known.get(job.id);
      if (before && before.state !== job.state) {
        jobs.jobs.set(job.id, before);
        onJobUpdate(job);
      }
      if (ACTIVE.has(job.state)) watch(job.id);
      else if (app.watched.has(job.id)) {
        app.watched.get(job.id)();
        app.watched.delete(job.id);
      }
    }
    pipelineHint();
  } catch { /* the health check reports a lost server */ }
  const busy = [...jobs.jobs.values()].some((j) => ACTIVE.has(j.state));
  setTimeout(poll, busy ? 1000 : 5000);
}

// ---- viewer -------------------------------------------------------------------------------------------
function modelUrl(job) {
  const files = job.result?.files || {};
  return files['model.glb'] || Object.entries(files).find(([name]) => name.endsWith('.glb'))?.[1];
}

async function openJob(job) {
  if (!app.viewer) return toast('The 3D preview is not available in this browser (no WebGL).', { error: true });
  const url = modelUrl(job);
  if (!url) return toast('This job has no model file.', { error: true });
  const viewport = $('viewport');
  viewport.dataset.loaded = 'loading';
  try {
    const data = await api.fileBytes(url);
    const stats = await app.viewer.load(data);
    app.current = job;
    jobs.setCurrent(job.id);
    showStats({ ...stats, seconds: elapsedSeconds(job) });
    $('viewer-empty').hidden = true;
    $('export-open').disabled = false;
    $('view-uv-note')?.remove();
    viewport.dataset.loaded = 'true';
    viewport.dataset.jobId = job.id;
  } catch (err) {
    viewport.dataset.loaded = 'error';
    reportError(err, 'Could not show the model');
  }
}

function showStats(stats) {
  const box = $('stats');
  if (!stats) {
    box.hidden = true;
    $('viewer-empty').hidden = false;
    $('export-open').disabled = true;
    $('viewport').dataset.loaded = 'false';
    return;
  }
  const rows = [['Vertices', count(stats.vertices)], ['Faces', count(stats.faces)],
    ['Texture', stats.texture ? `${stats.texture} px` : 'none'], ['File size', bytes(stats.fileBytes)],
    ['Generated in', stats.seconds !== null ? duration(stats.seconds) : '—']];
  box.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
  box.hidden = false;
}

function bindViewer() {
  const env = $('environment');
  for (const [value, label] of Object.entries(ENVIRONMENTS)) env.append(new Option(label, value));
  try {
    app.viewer = new Viewer($('viewer-canvas'), $('viewport'));
  } catch (err) {
    $('viewer-empty').textContent = `3D preview unavailable: WebGL could not start (${err.message}).`;
    for (const id of ['view-mode', 'environment', 'toggle-grid', 'toggle-axes', 'toggle-backface', 'toggle-turntable', 'reset-view']) {
      $(id).disabled = true;
    }
    return;
  }
  const v = app.viewer;
  $('view-mode').addEventListener('change', (e) => {
    v.setMode(e.target.value);
    $('viewport').dataset.mode = e.target.value;
    if (e.target.value === 'uv' && app.current && !v.hasUv()) toast('This model has no UV coordinates.');
  });
  env.addEventListener('change', (e) => v.setEnvironment(e.target.value));
  $('toggle-grid').addEventListener('change', (e) => v.setGrid(e.target.checked));
  $('toggle-axes').addEventListener('change', (e) => v.setAxes(e.target.checked));
  $('toggle-backface').addEventListener('change', (e) => v.setBackfaces(e.target.checked));
  $('toggle-turntable').addEventListener('change', (e) => v.setTurntable(e.target.checked));
  $('reset-view').addEventListener('click', () => v.resetView());
  $('viewport').dataset.mode = 'pbr';
}

// ---- export -------------------------------------------------------------------------------------------
function openExport(job) {
  app.exportJob = job;
  const p = job.params || {};
  $('ex-format').value = $('export-format').value;
  $('ex-texture').value = String(p.texture_size ?? $('texture-size').value);
  $('ex-decimation').value = String(p.decimation_target ?? $('decimation-target').value);
  $('ex-remesh').checked = p.remesh ?? $('remesh').checked;
  $('export-status').textContent = '';
  $('export-folder').hidden = true;
  $('export-dialog').showModal();
}

function fileNameFor(job, ext) {
  return `genesis-${job.engine}-seed${job.params?.seed ?? 0}-${String(job.id).slice(0, 8)}.${ext}`;
}

function exportedUrl(result, job, format) {
  if (typeof result === 'string') return result;
  const direct = result?.url || result?.file_url || result?.file || result?.path;
  if (typeof direct === 'string' && direct.startsWith('/')) return direct;
  const files = result?.files || result?.result?.files || {};
  const name = result?.name || result?.file_name || result?.filename;
  if (name && files[name]) return files[name];
  if (name) return `/api/jobs/${encodeURIComponent(job.id)}/files/${encodeURIComponent(name)}`;
  const ext = EXTENSIONS[format];
  const match = Object.entries(files).filter(([n]) => n.endsWith(`.${ext}`) || n.endsWith(`.${format}`));
  return match.at(-1)?.[1];
}

async function runExport(event) {
  event.preventDefault();
  const job = app.exportJob;
  const status = $('export-status');
  const decimation = Number($('ex-decimation').value);
  if (!Number.isInteger(decimation) || decimation < 10000 || decimation > 2000000) {
    status.textContent = 'Target faces must be a whole number between 10,000 and 2,000,000.';
    return;
  }
  const settings = { format: $('ex-format').value, decimation_target: decimation,
    texture_size: Number($('ex-texture').value), remesh: $('ex-remesh').checked };
  const run = $('export-run');
  run.disabled = true;
  status.textContent = 'Exporting… (no re-sampling: the stored generation is re-exported)';
  try {
    const result = await api.exportJob(job.id, settings);
    const url = exportedUrl(result, job, settings.format);
    if (!url) throw new Error('The server did not say where the exported file is.');
    const data = await api.fileBytes(url);
    const name = fileNameFor(job, EXTENSIONS[settings.format]);
    const saved = await desktop.saveFile(name, data);
    status.textContent = saved ? `Saved ${desktop.available ? saved : name} (${bytes(data.byteLength)}).` : 'Not saved.';
    $('export-folder').hidden = !(desktop.available && saved);
    api.job(job.id).then((j) => jobs.update(j)).catch(() => {});
  } catch (err) {
    const { text, fix } = explainError(err instanceof ApiError ? { code: err.code, message: err.message } : { message: err.message });
    status.textContent = `Export failed: ${text}${fix ? ` ${fix}` : ''}`;
  } finally {
    run.disabled = false;
  }
}

function bindExport() {
  $('export-open').addEventListener('click', () => app.current && openExport(app.current));
  $('export-form').addEventListener('submit', runExport);
  $('export-cancel').addEventListener('click', () => $('export-dialog').close());
  $('export-folder').addEventListener('click', () => desktop.openFolder());
}

// ---- start --------------------------------------------------------------------------------------------
function start() {
  app.input = new ImageInput({ onChange: validate, onError: (message) => toast(message, { error: true }) });
  bindTabs();
  bindForm();
  bindViewer();
  bindExport();
  setMode('image');
  refreshHealth();
  setInterval(refreshHealth, 15000);
  poll();
  pipelineHint();
  document.body.dataset.ready = 'true';
}

start();
