// The Models panel: every model the engines need, as the server lists it (GET /api/models): purpose, size,
// licence, gated or not, state on disk (missing, partial, present, verified); Download / Resume / Cancel per
// model and for all, with a progress bar (bytes, speed, time left); the licence link and the Hugging Face token
// for gated models (sent to our server once, which keeps it in the OS keyring or a file only the user can read,
// and never sends it back); and the background-removal model in use.

import { api } from './api.js';
import { bytes, duration } from './format.js';

const $ = (id) => document.getElementById(id);

const STATE_LABELS = { missing: 'Missing', partial: 'Partial', present: 'Present', verified: 'Verified' };
const TASK_LABELS = { queued: 'Queued', downloading: 'Downloading', verifying: 'Verifying checksums',
  done: 'Downloaded and verified', failed: 'Failed', cancelled: 'Cancelled' };
const ACTIVE = new Set(['queued', 'downloading', 'verifying']);
const POLL_ACTIVE_MS = 700;
const POLL_IDLE_MS = 5000;

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** "1.2 GB", or "about 1.2 GB" while the size is the server's estimate. */
function sizeText(model) {
  return `${model.size_exact ? '' : 'about '}${bytes(model.size_bytes)}`;
}

/** "1.2 GB of 16 GB · 45 MB/s · 5 min left" for a running task. */
export function progressText(task) {
  const parts = [task.total_bytes ? `${bytes(task.done_bytes)} of ${bytes(task.total_bytes)}` : bytes(task.done_bytes)];
  if (task.speed_bps) parts.push(`${bytes(task.speed_bps)}/s`);
  if (task.eta_s !== null && task.eta_s !== undefined) parts.push(`${duration(task.eta_s) || 'under a second'} left`);
  return parts.join(' · ');
}

/** What the row's button does: cancel a running download, or start / resume / verify one. */
function actionOf(model) {
  if (model.task && ACTIVE.has(model.task.state)) return { label: 'Cancel', verb: 'cancel' };
  if (model.state === 'verified') return null;
  if (model.state === 'present') return { label: 'Verify', verb: 'download' };
  if (model.state === 'partial' || model.bytes_on_disk > 0) return { label: 'Resume', verb: 'download' };
  return { label: 'Download', verb: 'download' };
}

/**
 * The line under the input about engines that cannot run: one line naming the engines that need models, with a
 * button that opens this panel. `engines`: [{label, ready, reason, current}] (the reason of a status names the
 * missing models' ids), `ids`: the models the server lists. Returns whether there is anything to show.
 */
export function showEngineNote(note, engines, ids, openPanel) {
  const current = engines.find((e) => e.current && !e.ready);
  const blocked = current ? [current] : engines.filter((e) => !e.ready);
  const named = ids.filter((id) => blocked.some((e) => (e.reason || '').includes(id)));
  const labels = blocked.filter((e) => named.some((id) => (e.reason || '').includes(id))).map((e) => e.label);
  note.classList.toggle('warn', Boolean(current));
  note.title = blocked.map((e) => `${e.label}: ${e.reason || 'not ready'}`).join('\n');
  if (named.length) {
    const many = named.length > 1;
    const button = el('button', { type: 'button', className: 'secondary small note-action', id: 'open-models-from-note',
      textContent: 'Open Models' });
    button.addEventListener('click', openPanel);
    const who = `${labels.join(' and ')} need${labels.length > 1 ? '' : 's'}`;
    const line = el('span', { className: 'note-line', textContent: `${who} ${named.length} more model${many ? 's' : ''}.` });
    note.replaceChildren(line, button);
    return true;
  }
  if (!current) return false;
  note.textContent = `This engine is not ready on the server: ${current.reason || 'unknown reason'}`;
  return true;
}

export class ModelsPanel {
  /** `onChange()` runs when a download has finished (the engines may be ready now). */
  constructor({ onChange = () => {}, onError = () => {} } = {}) {
    this.dialog = $('models-dialog');
    this.onChange = onChange;
    this.onError = onError;
    this.data = null;
    this.timer = null;
    this.finished = new Set();
    $('models-open').addEventListener('click', () => this.open());
    $('models-close').addEventListener('click', () => this.dialog.close());
    $('models-download-all').addEventListener('click', () => this.act(async () => {
      const answer = await api.models.downloadAll();
      $('models-note').textContent = answer.changed.length ? '' : 'Nothing to download: every model needed is verified.';
    }));
    $('models-cancel-all').addEventListener('click', () => this.act(() => api.models.cancel()));
    $('hf-token-form').addEventListener('submit', (event) => this.saveToken(event));
    $('hf-token-clear').addEventListener('click', () => this.act(() => api.models.clearToken(), { token: true }));
    $('models-list').addEventListener('click', (event) => this.rowAction(event));
    $('background-choice').addEventListener('change', (event) => {
      if (event.target.name === 'background') this.act(() => api.models.chooseBackground(event.target.value));
    });
    this.dialog.addEventListener('close', () => this.schedule());
  }

  async open() {
    if (this.dialog.open) return;
    await this.refresh(); // drawn first, so that the dialog's focus lands on its first row
    this.dialog.showModal();
    this.schedule();
  }

  /** Fetch the list and draw it; polls quickly while a download runs, slowly otherwise. */
  async refresh() {
    clearTimeout(this.timer);
    try {
      this.render(await api.models.list());
      $('models-error').textContent = '';
    } catch (err) {
      $('models-error').textContent = `The model list could not be read: ${err.message}`;
    }
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    const busy = this.data?.models.some((m) => m.task && ACTIVE.has(m.task.state));
    if (busy || this.dialog.open) this.timer = setTimeout(() => this.refresh(), busy ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  async act(call, { token = false } = {}) {
    try {
      const answer = await call();
      if (token) this.renderToken(answer);
      await this.refresh();
    } catch (err) {
      $(token ? 'hf-token-status' : 'models-error').textContent = err.message;
      this.onError(err);
    }
  }

  async saveToken(event) {
    event.preventDefault();
    const input = $('hf-token');
    const value = input.value.trim();
    if (!value) return;
    input.value = ''; // the page never keeps the token
    await this.act(() => api.models.setToken(value), { token: true });
  }

  rowAction(event) {
    const button = event.target.closest('button[data-verb]');
    if (!button) return;
    const id = button.closest('[data-repo]').dataset.repo;
    this.act(() => (button.dataset.verb === 'cancel' ? api.models.cancel(id) : api.models.download(id)));
  }

  render(data) {
    this.data = data;
    for (const model of data.models) {
      const task = model.task;
      if (task?.state === 'done' && !this.finished.has(task.queued_at)) {
        this.finished.add(task.queued_at);
        this.onChange();
      }
    }
    $('models-folder').textContent = `Models folder: ${data.folder} · ${bytes(data.free_bytes)} free`;
    $('models-list').replaceChildren(...data.models.map((m) => this.row(m, data)));
    this.renderToken(data.token, data.tokens_page);
    this.renderBackground(data);
    const busy = data.models.some((m) => m.task && ACTIVE.has(m.task.state));
    $('models-cancel-all').disabled = !busy;
    this.updateHeader(data);
  }

  row(model, data) {
    const task = model.task;
    const chips = [el('span', { className: `chip state-${model.state}`, textContent: STATE_LABELS[model.state] })];
    if (model.gated) chips.push(el('span', { className: 'chip gated', textContent: 'Gated' }));
    if (model.background && model.in_use) chips.push(el('span', { className: 'chip in-use', textContent: 'In use' }));
    const head = el('div', { className: 'model-head' }, [
      el('span', { className: 'model-name', textContent: model.id }), ...chips,
      el('span', { className: 'spacer' }),
      el('span', { className: 'model-size', textContent: sizeText(model) }),
    ]);
    const action = actionOf(model);
    if (action) {
      const button = el('button', { type: 'button', className: `small ${action.verb === 'cancel' ? 'secondary' : 'primary'}`, textContent: action.label });
      button.dataset.verb = action.verb;
      button.setAttribute('aria-label', `${action.label} ${model.id}`);
      head.append(button);
    }
    const item = el('li', { className: 'model-row' }, [
      head,
      el('p', { className: 'model-purpose', textContent: `${model.purpose}. Licence: ${model.licence}.` }),
    ]);
    item.dataset.repo = model.id;
    item.dataset.state = model.state;
    item.dataset.task = task?.state || '';
    if (model.gated && model.state !== 'verified') {
      const link = el('a', { href: model.page, target: '_blank', rel: 'noopener noreferrer', textContent: 'accept its licence' });
      const tokenNote = data.token.set ? 'the saved token is used.' : 'then save your Hugging Face token below.';
      item.append(el('p', { className: 'model-gate' }, ['Gated: ', link, ` on the hub with your account; ${tokenNote}`]));
    }
    if (task && ACTIVE.has(task.state)) {
      item.append(this.progress(model, task));
    } else if (model.state === 'partial' && model.bytes_on_disk) {
      const kept = `${bytes(model.bytes_on_disk)} of ${bytes(model.size_bytes)} on disk: Resume continues from there.`;
      item.append(el('p', { className: 'model-progress-text', textContent: task?.state === 'cancelled' ? `Cancelled. ${kept}` : kept }));
    } else if (task?.state === 'cancelled') {
      item.append(el('p', { className: 'model-progress-text', textContent: 'Cancelled.' }));
    }
    if (task?.state === 'failed') item.append(el('p', { className: 'model-error', role: 'alert', textContent: task.error }));
    return item;
  }

  progress(model, task) {
    const total = task.total_bytes || model.size_bytes || 1;
    const fraction = Math.min(1, task.done_bytes / total);
    if (task.state === 'queued') {
      return el('p', { className: 'model-progress-text', textContent: 'Queued: starts when the download before it ends.' });
    }
    const bar = el('div', { className: 'progress' }, [el('span', { style: `width: ${(fraction * 100).toFixed(1)}%` })]);
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-label', `${TASK_LABELS[task.state]} ${model.id}`);
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    bar.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
    const words = `${TASK_LABELS[task.state]}: ${progressText(task)}`;
    return el('div', { className: 'model-progress' }, [bar, el('p', { className: 'model-progress-text', textContent: words })]);
  }

  renderToken(token, page = this.data?.tokens_page) {
    const where = { keyring: 'the system keyring', file: 'a file only you can read' }[token.source] || token.source;
    const status = $('hf-token-status');
    if (token.set) {
      status.textContent = `Token set (${where}). It is only ever sent to the hub.`;
    } else {
      const link = el('a', { href: page, target: '_blank', rel: 'noopener noreferrer', textContent: 'create a read token' });
      const keep = token.storage === 'keyring' ? 'the system keyring' : 'a file only you can read';
      status.replaceChildren('Not set: ', link, ` on the hub and paste it here (kept in ${keep}).`);
    }
    $('hf-token-clear').disabled = !(token.set && ['keyring', 'file'].includes(token.source));
  }

  renderBackground(data) {
    const { background } = data;
    const box = $('background-options');
    const byId = new Map(data.models.map((m) => [m.id, m]));
    box.replaceChildren(...background.choices.map((id, i) => {
      const model = byId.get(id);
      const input = el('input', { type: 'radio', name: 'background', value: id,
        checked: (background.chosen || background.in_use || background.choices[0]) === id });
      const clean = i === 0 ? ' (licence-clean)' : '';
      return el('label', { className: 'check' }, [input, ` ${id}: ${model?.licence.split(' (')[0] || ''}${clean}, ${STATE_LABELS[model?.state] || ''}`.replace(/, $/, '')]);
    }));
    $('background-status').textContent = background.in_use
      ? `In use: ${background.in_use}.`
      : 'None installed: only images with a transparent background can be used with TRELLIS.2.';
  }

  /** The header button says when a download runs: "Models · 42%". */
  updateHeader(data) {
    const running = data.models.map((m) => m.task).find((t) => t && (t.state === 'downloading' || t.state === 'verifying'));
    const button = $('models-open');
    button.textContent = running && running.total_bytes
      ? `Models · ${Math.floor((100 * running.done_bytes) / running.total_bytes)}%`
      : 'Models';
  }
}
