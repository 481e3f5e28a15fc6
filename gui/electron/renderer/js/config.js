// The server's vocabulary (GET /api/config), loaded once at start: engines, menus, parameter limits and
// defaults, error codes with their hints. Nothing here is typed again; every menu and limit comes from it.

import { api } from './api.js';
import { explainError } from './format.js';

let current = null;

/** Fetch the configuration (once; later calls return the same object). */
export async function loadConfig() {
  current = current || await api.config();
  return current;
}

/** The loaded configuration (after `loadConfig`). */
export function config() {
  if (!current) throw new Error('The server configuration is not loaded yet.');
  return current;
}

/** The registry entry of engine `name` (label, route, image field and count, params). */
export function engine(name) {
  return config().engines[name];
}

/** `{ text, fix }` for a server error `{code, message}`, with the hint of the server's error table. */
export function explain(error) {
  return explainError(error, current?.errors || {});
}

/** Replace the options of `select` with `choices` ([{value, label}]) and select `selected`. */
export function fillSelect(select, choices, selected) {
  select.replaceChildren(...choices.map((c) => new Option(c.label, String(c.value), false, c.value === selected)));
}

/** The menu of a field with `choices` and no vocabulary menu of its own: each value, capitalised. */
export function choicesOf(field) {
  return (field.choices || []).map((value) => {
    const text = String(value);
    return { value, label: text.charAt(0).toUpperCase() + text.slice(1).toLowerCase() };
  });
}

/** Label `input`'s <label> (and its tooltip) as the config describes `field`. */
export function labelAs(input, field) {
  const label = document.querySelector(`label[for="${CSS.escape(input.id)}"]`);
  if (label) label.textContent = field.label;
  if (field.description) input.title = field.description;
}

/** Set `min`, `max` and (optionally) the value of a number input from a field of the config. */
export function applyLimits(input, field, { value = true } = {}) {
  if (field.minimum !== undefined) input.min = String(field.minimum);
  if (field.maximum !== undefined) input.max = String(field.maximum);
  if (value && field.default !== null && field.default !== undefined) input.value = String(field.default);
}
