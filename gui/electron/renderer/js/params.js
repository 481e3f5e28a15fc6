// Generation parameters, built from the server's description of each engine's `params` (GET /api/config):
// the inputs' limits and defaults, the Advanced sampler fields, reading the form into an API `params` object
// and writing a job's params back. A field without an input here is left to the server's default.

import { applyLimits, choicesOf, config, fillSelect, labelAs } from './config.js';

const $ = (id) => document.getElementById(id);
const inputId = (name) => name.replace(/_/g, '-');
const samplerId = (stage, name) => `${stage.replace('_sampler_params', '')}-${name}`.replace(/_/g, '-');
const stagesOf = (fields) => Object.entries(fields).filter(([, f]) => f.type === 'object');

/** The menus with labels of their own in the vocabulary; any other menu lists its field's `choices`. */
const CHOICES = {
  pipeline_type: () => config().pipeline_types,
  texture_size: () => config().texture_sizes,
  mode: () => config().multiview_modes,
};

/** Fill the menus and limits of the form for an engine's `fields`. A field the user has not edited shows this
 * engine's default (the Fast tab's draft export settings differ from TRELLIS.2's); an edited one keeps its value. */
export function prepareForm(fields) {
  for (const [name, field] of Object.entries(fields)) {
    const input = $(inputId(name));
    if (name === 'mode') buildRadios($('mode-choices'), field);
    if (!input || name === 'mode') continue;
    if (!input.dataset.prepared) {
      input.dataset.prepared = 'true';
      input.addEventListener('change', (e) => { if (e.isTrusted) markEdited(input); });
    }
    const keep = input.dataset.edited === 'true';
    if (input.tagName === 'SELECT') {
      if (!input.options.length) fillMenu(input, name, field);
      if (!keep && field.default !== null && field.default !== undefined) input.value = String(field.default);
    } else if (input.type === 'number') applyLimits(input, field, { value: !keep && input.id !== 'seed' || input.value === '' });
    else if (input.type === 'checkbox' && !keep) input.checked = Boolean(field.default);
  }
  for (const box of document.querySelectorAll('[data-param]')) {
    const param = box.dataset.param;
    box.hidden = param === 'sampler' ? stagesOf(fields).length === 0 : !(param in fields);
  }
}

/** From now on `input` keeps its value when the engine changes. */
const markEdited = (input) => { input.dataset.edited = 'true'; };

/** Fill a menu: the vocabulary's labelled choices, or the field's own `choices` (labelled as the config says). */
function fillMenu(select, name, field) {
  if (CHOICES[name]) return fillSelect(select, CHOICES[name](), field.default);
  fillSelect(select, choicesOf(field), field.default);
  labelAs(select, field);
}

function buildRadios(fieldset, field) {
  if (fieldset.querySelector('input')) return;
  $('mode-legend').textContent = field.label;
  fieldset.setAttribute('aria-label', field.label);
  for (const choice of CHOICES.mode()) {
    const label = document.createElement('label');
    const radio = Object.assign(document.createElement('input'), { type: 'radio', name: 'mode', value: choice.value,
      checked: choice.value === field.default });
    label.append(radio, ` ${choice.label}`);
    fieldset.append(label);
  }
}

/**
 * The Advanced fold: one line per sampler field saying what it does (the fields' `description`, the same for
 * every stage), then one fieldset per sampler stage of `fields` (with its own line) and one number input per
 * sampler field. Empty means "the model's own value", shown as the placeholder (`defaults`: the models'
 * pipeline.json values).
 */
export function buildSamplerFields(container, fields, defaults = {}) {
  const kept = new Map([...container.querySelectorAll('input')].map((i) => [i.id, i.value]));
  container.replaceChildren();
  const stages = stagesOf(fields);
  if (stages.length) container.append(samplerHelp(stages[0][1].fields));
  for (const [stage, spec] of stages) {
    const set = document.createElement('fieldset');
    const legend = document.createElement('legend');
    legend.textContent = spec.label;
    set.append(legend);
    if (spec.description) {
      const about = Object.assign(document.createElement('p'), { className: 'hint stage-help', id: `${samplerId(stage, 'help')}`,
        textContent: spec.description });
      set.setAttribute('aria-describedby', about.id);
      set.append(about);
    }
    const grid = document.createElement('div');
    grid.className = 'grid4';
    for (const [name, field] of Object.entries(spec.fields)) {
      const id = samplerId(stage, name);
      const wrap = document.createElement('div');
      wrap.className = 'field';
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = field.label;
      label.title = `${spec.label}: ${field.label} (${field.minimum}–${field.maximum})${field.description ? `. ${field.description}` : ''}`;
      const input = Object.assign(document.createElement('input'), { type: 'number', id,
        step: field.type === 'integer' ? '1' : 'any', value: kept.get(id) ?? '' });
      applyLimits(input, field, { value: false });
      const official = defaults[stage]?.[name];
      input.placeholder = official === undefined ? 'model default' : String(official);
      input.setAttribute('aria-label', `${spec.label} ${field.label}, ${field.minimum} to ${field.maximum}`);
      if (field.description) input.setAttribute('aria-describedby', helpId(name));
      wrap.append(label, input);
      grid.append(wrap);
    }
    set.append(grid);
    container.append(set);
  }
}

const helpId = (name) => `sampler-help-${name.replace(/_/g, '-')}`;

/** What each sampler field does, one line each, in the words of the fields' descriptions. */
function samplerHelp(samplerFields) {
  const list = Object.assign(document.createElement('dl'), { className: 'field-help', id: 'sampler-help' });
  for (const [name, field] of Object.entries(samplerFields)) {
    if (!field.description) continue;
    const row = document.createElement('div');
    row.append(Object.assign(document.createElement('dt'), { textContent: field.label }),
      Object.assign(document.createElement('dd'), { id: helpId(name), textContent: field.description }));
    list.append(row);
  }
  return list;
}

/** Back to the models' own values: every sampler field empty. */
export function resetSamplerFields(container) {
  for (const input of container.querySelectorAll('input')) input.value = '';
}

/** Check one number input against its field; `{ value }`, `{ error }` or `{}` (empty and nullable). */
export function numberIn(input, field, label = field.label) {
  const text = input.value.trim();
  if (text === '' && field.nullable) return {};
  const value = Number(text);
  if (text === '' || !Number.isFinite(value)) return { error: `${label} must be a number.` };
  if (field.type === 'integer' && !Number.isInteger(value)) return { error: `${label} must be a whole number.` };
  if (value < field.minimum || value > field.maximum) {
    return { error: `${label} must be between ${field.minimum.toLocaleString('en-US')} and ${field.maximum.toLocaleString('en-US')}.` };
  }
  return { value };
}

function readField(name, field, take) {
  if (field.type === 'object') {
    const out = {};
    for (const [sub, subField] of Object.entries(field.fields)) {
      const value = take($(samplerId(name, sub)), subField, `${field.label} ${subField.label.toLowerCase()}`);
      if (value !== undefined) out[sub] = value;
    }
    return out;
  }
  if (name === 'mode') return document.querySelector('input[name="mode"]:checked')?.value;
  const input = $(inputId(name));
  if (!input) return undefined;
  if (field.type === 'boolean') return input.checked;
  if (input.tagName === 'SELECT') return field.type === 'string' ? input.value : Number(input.value);
  return take(input, field, field.label);
}

/**
 * Read the form into `{ params, errors }` for an engine's `fields`. Every value is checked against the
 * server's limits, so nothing invalid is submitted; fields without an input keep the server's default.
 */
export function readParams(fields) {
  const errors = [];
  const take = (input, field, label) => {
    const r = numberIn(input, field, label);
    if (r.error) errors.push({ input, message: r.error });
    return r.value;
  };
  const params = {};
  for (const [name, field] of Object.entries(fields)) {
    const value = readField(name, field, take);
    if (value !== undefined) params[name] = value;
  }
  return { params, errors };
}

/** Put a job's parameters back into the form (the "Use these settings" action). */
export function writeParams(params) {
  if (!params) return;
  const set = (input, value) => {
    if (!input || value === undefined || value === null) return;
    markEdited(input);
    if (input.type === 'checkbox') input.checked = Boolean(value);
    else if (input.tagName !== 'SELECT' || [...input.options].some((o) => o.value === String(value))) input.value = String(value);
  };
  for (const [name, value] of Object.entries(params)) {
    if (value && typeof value === 'object') {
      for (const [sub, v] of Object.entries(value)) {
        const input = $(samplerId(name, sub));
        if (input) input.value = v === null ? '' : String(v); // null: the model's own value
      }
    } else if (name === 'mode') {
      const radio = document.querySelector(`input[name="mode"][value="${CSS.escape(String(value))}"]`);
      if (radio) radio.checked = true;
    } else {
      set($(inputId(name)), value);
    }
  }
}

/** A random seed within the engine's `seed` field. */
export function randomSeed(fields) {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % (fields.seed.maximum + 1);
}
