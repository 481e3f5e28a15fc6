// Genesis renderer: wires the input, the settings form, the job list and the viewer to the REST API.

import { api, ApiError } from './api.js';
import { applyLimits, choicesOf, config, engine, explain, fillSelect, labelAs, loadConfig } from './config.js';
import { desktop } from './desktop.js';
import { bytes, count, duration, elapsedSeconds } from './format.js';
import { ImageInput } from './input.js';
import { inputFileName, inputUrls } from './jobinfo.js';
import { ACTIVE, JobList, jobLabel } from './jobs.js';
import { ModelsPanel, showEngineNote } from './models.js';
import { buildSamplerFields, numberIn, prepareForm, randomSeed, readParams, resetSamplerFields, writeParams } from './params.js';
import { ENVIRONMENTS, VIEW_MODES, Viewer } from './viewer.js';

const $ = (id) => document.getElementById(id);

const app = {
  mode: null, // the engine name of the selected tab (a key of the config's engines)
  health: null,
  viewer: null,
  current: null,
  lastSeed: null,
  watched: new Map(), // job id → stop function of its event stream
  pendingOpen: null, // the job being watched: it opens in the viewer when it is done
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

function errorOf(err) {
  return err instanceof ApiError ? { code: err.code, message: err.message, hint: err.hint }
    : { message: String(err?.message || err) };
}

function reportError(err, context) {
  const { text, fix } = explain(errorOf(err));
  toast(`${context}: ${text}${fix ? ` ${fix}` : ''}`, { error: true });
}

// ---- server status -----------------------------------------------------------------------------------
async function refreshHealth() {
  const status = $('server-status');
  try {
    app.health = await api.health();
    status.dataset.reachable = 'true';
  } catch (err) {
    app.health = null;
    status.textContent = 'Server not reachable';
    status.className = 'server-status bad';
    status.dataset.reachable = 'false';
    status.title = err.message;
  }
  updateModeAvailability();
  validate();
}

/** The header shows the server's one-line summary of which engines can run (`summary` of GET /api/health), amber
 * when the chosen one cannot; each engine's full reason is in the tooltip. */
function showEngineSummary(status) {
  const names = Object.keys(config().engines);
  status.textContent = app.health.summary + (desktop.available ? '' : ` · ${location.host}`);
  status.title = names.map((name) => `${engine(name).label}: ${engineState(name).reason || 'ready'}`).join('\n');
  status.className = `server-status ${engineState(app.mode || names[0]).ready ? 'ok' : 'warn'}`;
}

/** When the first engine cannot run (e.g. TRELLIS.2 without its models) open on one that can, and say why. */
function openOnAReadyEngine(names) {
  const first = names[0];
  const ready = names.find((name) => engineState(name).ready);
  if (engineState(first).ready || !ready) return;
  setMode(ready);
  const told = !$('fast-note').hidden; // the line under the input says what is missing
  toast(`${engine(ready).label} works now.${told ? '' : ` ${engine(first).label}: ${engineState(first).reason || 'not ready'}`}`);
}

function engineState(name) {
  return app.health?.engines?.[name] || config().engines[name];
}

function updateModeAvailability() {
  for (const tab of document.querySelectorAll('#mode-tabs [role="tab"]')) {
    const state = engineState(tab.dataset.mode);
    tab.setAttribute('aria-disabled', String(!state.ready));
    tab.title = state.ready ? engine(tab.dataset.mode).description : `Not available: ${state.reason || 'not ready'}`;
  }
  if (app.health) showEngineSummary($('server-status'));
  // one line (and a button to the Models panel) when engines lack models, else the chosen engine's reason
  const engines = Object.keys(config().engines).map((name) => ({ label: engine(name).label, current: name === app.mode,
    ...engineState(name) }));
  const note = $('fast-note');
  note.hidden = !app.health || !showEngineNote(note, engines, config().models.map((m) => m.id), () => app.models.open());
}

// ---- modes --------------------------------------------------------------------------------------------
/** The engine's `params` fields as GET /api/config describes them. */
const fields = () => engine(app.mode).params;

function setMode(mode, { focus = false, force = false } = {}) {
  const entry = engine(mode);
  if (!force && !engineState(mode).ready) {
    toast(`${entry.label} mode is not available: ${engineState(mode).reason || 'the server says it is not ready'}.`);
    return;
  }
  app.mode = mode;
  let selectedTab = null;
  for (const tab of document.querySelectorAll('#mode-tabs [role="tab"]')) {
    const selected = tab.dataset.mode === mode;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected) selectedTab = tab;
    if (selected && focus) tab.focus();
  }
  $('input-panel').setAttribute('aria-labelledby', selectedTab.id);
  prepareForm(entry.params);
  buildSamplerFields($('sampler-fields'), entry.params, entry.sampler_defaults);
  const multi = entry.max_images > 1;
  app.input.setMode(multi ? 'multiview' : 'image', { min: entry.min_images, max: entry.max_images });
  $('device-note').textContent = entry.device_note || '';
  $('device-note').hidden = !entry.device_note;
  updateModeAvailability();
  validate();
  app.input.previewCutout(); // the engine's own cut-out of an opaque image
}

/** One tab per engine of the server's registry: `#mode-<route>`, labelled as the registry says. */
function buildTabs() {
  const list = $('mode-tabs');
  list.replaceChildren(...Object.entries(config().engines).map(([name, entry]) => {
    const tab = document.createElement('button');
    Object.assign(tab, { type: 'button', id: `mode-${entry.route}`, textContent: entry.label, tabIndex: -1 });
    tab.dataset.mode = name;
    tab.setAttribute('role', 'tab');
    tab.setAttribute('aria-selected', 'false');
    tab.setAttribute('aria-controls', 'input-panel');
    return tab;
  }));
}

function bindTabs() {
  buildTabs();
  const tabs = [...document.querySelectorAll('#mode-tabs [role="tab"]')];
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
  if (!app.mode) return false;
  const { errors } = readParams(fields());
  const files = app.input?.files() || [];
  const { min_images: least } = engine(app.mode);
  let problem = errors[0]?.message || '';
  if (!problem && least === 1) problem = app.input.problem; // e.g. no object can be cut out of the image
  if (!problem && files.length < least) problem = least > 1 ? `Add at least ${least} views.` : 'Add an image to start.';
  if (!problem && app.health && !engineState(app.mode).ready) problem = 'This engine is not ready on the server.';
  if (!problem && !app.health) problem = 'Waiting for the server…';
  $('form-error').textContent = problem;
  $('generate').disabled = Boolean(problem);
  return !problem;
}

async function submit(event) {
  event.preventDefault();
  if (!validate()) return;
  const { params } = readParams(fields());
  const files = app.input.files();
  if ('name' in fields() && files[0]?.name) params.name = assetName(files[0].name);
  const button = $('generate');
  button.disabled = true;
  try {
    const { job_id: id } = await api.generate(engine(app.mode), files, params);
    app.lastSeed = params.seed;
    $('seed-reuse').disabled = false;
    setWatched(id);
    onJobUpdate(await api.job(id)); // a quick job may be done already: it opens now
    watch(id);
    toast('Queued. You can keep working while it runs.');
    if ($('seed-auto').checked) $('seed').value = String(randomSeed(fields()));
  } catch (err) {
    $('form-error').textContent = explain(errorOf(err)).text;
    reportError(err, 'Could not start the job');
  } finally {
    validate();
  }
}

/** The asset name a job gets from its (first) image: the file name without its extension (the server
 * sanitises it and names the material, textures, mesh and node `genesis_<name>`). */
function assetName(fileName) {
  return fileName.replace(/\.[^.]*$/, '');
}

function pipelineHint() {
  const type = $('pipeline-type').value;
  const times = [...jobs.jobs.values()]
    .filter((j) => j.state === 'succeeded' && j.params?.pipeline_type === type && elapsedSeconds(j) !== null)
    .map((j) => elapsedSeconds(j));
  const memory = [...jobs.jobs.values()]
    .filter((j) => j.params?.pipeline_type === type)
    .map((j) => j.result?.stats?.peak_vram_bytes)
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
  const form = $('generate-form');
  form.addEventListener('submit', submit);
  form.addEventListener('input', validate);
  form.addEventListener('change', validate);
  $('seed-random').addEventListener('click', () => {
    $('seed').value = String(randomSeed(fields()));
    validate();
  });
  $('seed-reuse').addEventListener('click', () => {
    if (app.lastSeed !== null) $('seed').value = String(app.lastSeed);
    validate();
  });
  $('sampler-reset').addEventListener('click', () => {
    resetSamplerFields($('sampler-fields'));
    validate();
  });
  $('pipeline-type').addEventListener('change', pipelineHint);
}

// ---- jobs ---------------------------------------------------------------------------------------------
const jobs = new JobList({
  open: (job) => openJob(job),
  cancel: async (job) => {
    jobs.markCancelling(job.id);
    try {
      const answer = await api.cancel(job.id);
      jobs.update(answer);
      if (answer.state === 'cancelled') toast('Cancelled.');
    } catch (err) {
      jobs.unmarkCancelling(job.id);
      reportError(err, 'Could not cancel');
    }
  },
  remove: (job) => removeJob(job),
  useSettings: async (job) => {
    if (job.engine !== app.mode && engine(job.engine)) setMode(job.engine);
    writeParams(job.params);
    validate();
    const restored = await restoreInputs(job);
    toast(`Settings${restored ? ' and picture' : ''} of ${jobLabel(job)} copied into the form.`);
  },
  exportJob: (job) => openExport(job),
  refine: async (job) => {
    try {
      const { job_id: id } = await api.refine(job.id);
      setWatched(id);
      onJobUpdate(await api.job(id));
      watch(id);
      toast(`Refining ${jobLabel(job)} with TRELLIS.2: same shape, full detail.`);
    } catch (err) {
      reportError(err, 'Could not refine');
    }
  },
  openWhenDone: (job) => {
    setWatched(job.id);
    toast(`${jobLabel(job)} opens in the viewer when it is done.`);
  },
});

/** Put the job's input images back into the input (its stored PNGs), named after the job; whether it worked. */
async function restoreInputs(job) {
  const urls = inputUrls(job);
  if (!urls.length) return false;
  try {
    const files = await Promise.all(urls.map(async (url, i) => new File([await api.fileBytes(url)],
      inputFileName(job, i), { type: 'image/png' })));
    await app.input.restore(files);
    return true;
  } catch (err) {
    reportError(err, 'Could not restore the picture');
    return false;
  }
}

const WATCHED_KEY = 'genesis.watched';

/** After a reload: the job watched before it, while it is still queued or running (one done meanwhile is not
 * opened). */
async function resumeWatching() {
  const id = sessionStorage.getItem(WATCHED_KEY);
  if (!id) return;
  const job = await api.job(id).catch(() => null);
  if (app.pendingOpen) return; // a job submitted meanwhile is the one watched now
  setWatched(job && ACTIVE.has(job.state) ? id : null);
}

/** The job being watched (it opens in the viewer when it is done; kept across a reload), or none. */
function setWatched(id) {
  app.pendingOpen = id;
  if (id) sessionStorage.setItem(WATCHED_KEY, id);
  else sessionStorage.removeItem(WATCHED_KEY);
  jobs.setWatched(id);
}

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
      setWatched(null);
      openJob(jobs.jobs.get(job.id));
    }
  }
  if (before?.state !== job.state && !ACTIVE.has(job.state) && job.state !== 'succeeded' && app.pendingOpen === job.id) {
    setWatched(null); // it ended without a model
  }
  if (before?.state !== job.state && job.state === 'failed') {
    toast(`${jobLabel(job)} failed: ${explain(job.error).text}`, { error: true });
  }
}

function watch(id) {
  if (app.watched.has(id)) return;
  app.watched.set(id, api.watch(id, config().events, {
    onJob: onJobUpdate,
    onDeleted: () => {
      app.watched.delete(id);
      jobs.remove(id);
    },
  }));
}

async function poll() {
  try {
    const items = await api.jobs();
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
  return job.result?.model;
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
  fillSelect($('view-mode'), Object.entries(VIEW_MODES).map(([value, label]) => ({ value, label })), 'pbr');
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
function prepareExport() {
  const { export: exportFields, export_formats: formats, texture_sizes: sizes } = config();
  fillSelect($('export-format'), formats, exportFields.format.default);
  fillSelect($('ex-format'), formats, exportFields.format.default);
  fillSelect($('ex-texture'), sizes, exportFields.texture_size.default);
  applyLimits($('ex-decimation'), exportFields.decimation_target);
  for (const [id, name] of EXPORT_MENUS) {
    fillSelect($(id), choicesOf(exportFields[name]), exportFields[name].default);
    labelAs($(id), exportFields[name]);
  }
  applyLimits($('ex-alpha-cutoff'), exportFields.alpha_cutoff);
  labelAs($('ex-alpha-cutoff'), exportFields.alpha_cutoff);
  labelAs($('ex-name'), exportFields.name);
}

/** The export dialog's menus built from the export fields' `choices` (GET /api/config `export`). */
const EXPORT_MENUS = [['ex-alpha-mode', 'alpha_mode'], ['ex-up-axis', 'up_axis']];

function openExport(job) {
  app.exportJob = job;
  const p = job.params || {};
  const defaults = config().export;
  $('ex-format').value = $('export-format').value;
  $('ex-texture').value = String(p.texture_size ?? $('texture-size').value);
  $('ex-decimation').value = String(p.decimation_target ?? $('decimation-target').value);
  $('ex-remesh').checked = p.remesh ?? $('remesh').checked;
  for (const [id, name] of EXPORT_MENUS) $(id).value = String(p[name] ?? defaults[name].default);
  $('ex-alpha-cutoff').value = String(p.alpha_cutoff ?? defaults.alpha_cutoff.default);
  $('ex-name').value = p.name ?? '';
  $('ex-name').placeholder = `from the job (${job.id.slice(0, 8)})`;
  $('export-status').textContent = '';
  $('export-folder').hidden = true;
  $('export-dialog').showModal();
}

async function runExport(event) {
  event.preventDefault();
  const job = app.exportJob;
  const status = $('export-status');
  const decimation = numberIn($('ex-decimation'), config().export.decimation_target);
  const cutoff = numberIn($('ex-alpha-cutoff'), config().export.alpha_cutoff);
  const problem = decimation.error || cutoff.error;
  if (problem) {
    status.textContent = problem;
    return;
  }
  const settings = { format: $('ex-format').value, decimation_target: decimation.value,
    texture_size: Number($('ex-texture').value), remesh: $('ex-remesh').checked,
    alpha_mode: $('ex-alpha-mode').value, alpha_cutoff: cutoff.value, up_axis: $('ex-up-axis').value };
  const name = $('ex-name').value.trim();
  if (name) settings.name = name;
  const run = $('export-run');
  run.disabled = true;
  status.textContent = 'Exporting… (no re-sampling: the stored generation is re-exported)';
  try {
    const result = await api.exportJob(job.id, settings);
    const data = await api.fileBytes(result.url);
    const saved = await desktop.saveFile(result.download_name, data);
    status.textContent = saved ? `Saved ${desktop.available ? saved : result.download_name} (${bytes(data.byteLength)}).` : 'Not saved.';
    $('export-folder').hidden = !(desktop.available && saved);
    api.job(job.id).then((j) => jobs.update(j)).catch(() => {});
  } catch (err) {
    const { text, fix } = explain(errorOf(err));
    status.textContent = `Export failed: ${text}${fix ? ` ${fix}` : ''}`;
  } finally {
    run.disabled = false;
  }
}

function bindExport() {
  prepareExport();
  $('export-open').addEventListener('click', () => app.current && openExport(app.current));
  $('export-form').addEventListener('submit', runExport);
  $('export-cancel').addEventListener('click', () => $('export-dialog').close());
  $('export-folder').addEventListener('click', () => desktop.openFolder());
}

// ---- start --------------------------------------------------------------------------------------------
async function start() {
  try {
    await loadConfig();
  } catch (err) {
    $('server-status').textContent = 'Server not reachable';
    $('server-status').className = 'server-status bad';
    $('form-error').textContent = `${explain(errorOf(err)).text} Retrying…`;
    setTimeout(start, 3000);
    return;
  }
  app.input = new ImageInput({ onChange: validate, onError: (message) => toast(message, { error: true }),
    maxBytes: config().uploads.max_upload_bytes, cutout: (file) => api.cutout(file, app.mode) });
  bindTabs();
  bindForm();
  bindViewer();
  bindExport();
  app.models = new ModelsPanel({ onChange: refreshHealth });
  const names = Object.keys(config().engines);
  setMode(names[0], { force: true });
  await refreshHealth();
  openOnAReadyEngine(names);
  setInterval(refreshHealth, 15000);
  resumeWatching();
  poll();
  pipelineHint();
  document.body.dataset.ready = 'true';
}

start();
