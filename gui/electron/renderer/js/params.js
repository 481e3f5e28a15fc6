// Generation parameters: official defaults and ranges (TRELLIS.2 pipeline.json; server limits), the
// Advanced fields, reading the form into an API `params` object and writing a job's params back.

export const MAX_SEED = 2 ** 31 - 1;

export const STAGES = [
  { key: 'sparse_structure_sampler_params', label: 'Sparse structure',
    defaults: { steps: 12, guidance_strength: 7.5, guidance_rescale: 0.7, rescale_t: 5.0 } },
  { key: 'shape_slat_sampler_params', label: 'Shape',
    defaults: { steps: 12, guidance_strength: 7.5, guidance_rescale: 0.5, rescale_t: 3.0 } },
  { key: 'tex_slat_sampler_params', label: 'Texture',
    defaults: { steps: 12, guidance_strength: 1.0, guidance_rescale: 0.0, rescale_t: 3.0 } },
];

export const SAMPLER_FIELDS = [
  { name: 'steps', label: 'Steps', min: 1, max: 50, step: 1, integer: true },
  { name: 'guidance_strength', label: 'Guidance', min: 1, max: 10, step: 0.1 },
  { name: 'guidance_rescale', label: 'Rescale', min: 0, max: 1, step: 0.05 },
  { name: 'rescale_t', label: 'Rescale t', min: 1, max: 6, step: 0.1 },
];

export const EXPORT_LIMITS = { decimation_target: [10000, 2000000], texture_sizes: [512, 1024, 2048, 4096] };

const $ = (id) => document.getElementById(id);
const samplerId = (stage, field) => `${stage.key.replace('_sampler_params', '')}-${field.name}`.replace(/_/g, '-');

/** Build the Advanced fold: one fieldset per stage, four number inputs each. */
export function buildSamplerFields(container) {
  container.replaceChildren();
  for (const stage of STAGES) {
    const set = document.createElement('fieldset');
    const legend = document.createElement('legend');
    legend.textContent = stage.label;
    const grid = document.createElement('div');
    grid.className = 'grid4';
    for (const field of SAMPLER_FIELDS) {
      const id = samplerId(stage, field);
      const wrap = document.createElement('div');
      wrap.className = 'field';
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = field.label;
      label.title = `${stage.label}: ${field.label} (${field.min}–${field.max})`;
      const input = document.createElement('input');
      Object.assign(input, { type: 'number', id, min: field.min, max: field.max, step: field.step, required: true });
      input.value = stage.defaults[field.name];
      input.setAttribute('aria-label', `${stage.label} ${field.label}, ${field.min} to ${field.max}`);
      wrap.append(label, input);
      grid.append(wrap);
    }
    set.append(legend, grid);
    container.append(set);
  }
}

export function resetSamplerFields() {
  for (const stage of STAGES) {
    for (const field of SAMPLER_FIELDS) $(samplerId(stage, field)).value = stage.defaults[field.name];
  }
}

function numberIn(input, { min, max, integer = false, label }) {
  const text = input.value.trim();
  const value = Number(text);
  if (text === '' || !Number.isFinite(value)) return { error: `${label} must be a number.` };
  if (integer && !Number.isInteger(value)) return { error: `${label} must be a whole number.` };
  if (value < min || value > max) return { error: `${label} must be between ${min} and ${max}.` };
  return { value };
}

/**
 * Read the form into `{ params, errors }` for `mode` (image | multiview | fast). Every value is
 * checked against the server's ranges, so nothing invalid is ever submitted.
 */
export function readParams(mode) {
  const errors = [];
  const take = (input, spec) => {
    const r = numberIn(input, spec);
    if (r.error) {
      errors.push({ input, message: r.error });
      return undefined;
    }
    return r.value;
  };
  const params = {
    seed: take($('seed'), { min: 0, max: MAX_SEED, integer: true, label: 'Seed' }),
    decimation_target: take($('decimation-target'),
      { min: EXPORT_LIMITS.decimation_target[0], max: EXPORT_LIMITS.decimation_target[1], integer: true, label: 'Target faces' }),
    texture_size: Number($('texture-size').value),
    remesh: $('remesh').checked,
  };
  if (mode !== 'fast') {
    params.pipeline_type = $('pipeline-type').value;
    for (const stage of STAGES) {
      params[stage.key] = {};
      for (const field of SAMPLER_FIELDS) {
        params[stage.key][field.name] = take($(samplerId(stage, field)),
          { ...field, label: `${stage.label} ${field.label.toLowerCase()}` });
      }
    }
  }
  if (mode === 'multiview') params.mode = document.querySelector('input[name="mv-mode"]:checked').value;
  return { params, errors };
}

/** Put a job's parameters back into the form (the "Use these settings" action). */
export function writeParams(params) {
  if (!params) return;
  const set = (id, value) => {
    if (value !== undefined && value !== null) $(id).value = String(value);
  };
  set('seed', params.seed);
  set('decimation-target', params.decimation_target);
  if (EXPORT_LIMITS.texture_sizes.includes(Number(params.texture_size))) set('texture-size', params.texture_size);
  if (typeof params.remesh === 'boolean') $('remesh').checked = params.remesh;
  if ([...$('pipeline-type').options].some((o) => o.value === params.pipeline_type)) set('pipeline-type', params.pipeline_type);
  for (const stage of STAGES) {
    for (const field of SAMPLER_FIELDS) set(samplerId(stage, field), params[stage.key]?.[field.name]);
  }
  if (params.mode) {
    const radio = document.querySelector(`input[name="mv-mode"][value="${CSS.escape(params.mode)}"]`);
    if (radio) radio.checked = true;
  }
}

export function randomSeed() {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % (MAX_SEED + 1);
}
