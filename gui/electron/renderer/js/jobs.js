// The job list (queued and running jobs with stage, progress, ETA, cancel) and the history of
// finished jobs (a picture of the result, the job's name, reopen, export, reuse settings, delete, errors with
// their fix). The job being watched opens in the viewer when it is done; any other running job can be chosen.

import { withToken } from './api.js';
import { config, engine, explain } from './config.js';
import { clock, duration, elapsedSeconds, stageName, toDate } from './format.js';
import { cardPicture, jobName, picturesResult } from './jobinfo.js';

const ACTIVE = new Set(['queued', 'running']);
const STATE_NAMES = { queued: 'Queued', running: 'Running', succeeded: 'Done', failed: 'Failed', cancelled: 'Cancelled' };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('aria-') || key === 'role') node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function button(text, label, onClick, kind = 'secondary') {
  const b = el('button', { type: 'button', className: `${kind} small`, textContent: text });
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

/** The engine and seed of a job: `Fast · seed 3`. */
export function jobTitle(job) {
  const name = engine(job.engine)?.label || job.engine;
  const seed = job.params?.seed;
  return seed === undefined ? name : `${name} · seed ${seed}`;
}

/** How a job is called in buttons and messages: its name with the engine and seed, `chair (Fast · seed 3)`. */
export function jobLabel(job) {
  const name = jobName(job);
  return name ? `${name} (${jobTitle(job)})` : jobTitle(job);
}

function thumbnail(job) {
  const src = cardPicture(job);
  const kind = picturesResult(job) ? 'result' : 'checker';
  const img = el('img', { className: `thumb ${kind}`, alt: '', loading: 'lazy', decoding: 'async' });
  if (src) img.src = withToken(src);
  return img;
}

/** The card's title row: the job's name (else the engine and seed) and its state badge. */
function titleRow(job, badge) {
  const name = jobName(job);
  return el('div', { className: 'title' }, el('span', { className: 'name', textContent: name || jobTitle(job), title: name }),
    el('span', { className: `badge ${job.state}`, textContent: badge }));
}

/** Under a named job's title, its engine and seed (an unnamed job has them as its title). */
const engineLine = (job) => (jobName(job) ? el('div', { className: 'meta engine', textContent: jobTitle(job) }) : null);

export class JobList {
  constructor(actions) {
    this.actions = actions;
    this.jobs = new Map();
    this.currentId = null;
    this.watchedId = null; // the job that opens in the viewer when it is done
    this.cancelling = new Set(); // ids whose Cancel was clicked: shown as stopping until they end
  }

  /** Show the job as stopping at once (before the server has answered). */
  markCancelling(id) {
    this.cancelling.add(id);
    this.render();
  }

  /** The cancel request failed: show the job as it was. */
  unmarkCancelling(id) {
    this.cancelling.delete(id);
    this.render();
  }

  /** Replace the whole list (from GET /api/jobs). */
  setAll(jobs) {
    this.jobs = new Map(jobs.map((j) => [j.id, j]));
    this.render();
  }

  /** Merge one job update (from server-sent events or a poll). */
  update(job) {
    this.jobs.set(job.id, { ...this.jobs.get(job.id), ...job });
    this.render();
  }

  remove(id) {
    this.jobs.delete(id);
    this.render();
  }

  setCurrent(id) {
    this.currentId = id;
    this.render();
  }

  setWatched(id) {
    this.watchedId = id;
    this.render();
  }

  sorted() {
    const time = (j) => toDate(j.created_at)?.getTime() ?? 0;
    return [...this.jobs.values()].sort((a, b) => time(b) - time(a));
  }

  render() {
    const jobs = this.sorted();
    const active = jobs.filter((j) => ACTIVE.has(j.state)).reverse(); // oldest first: the order they run
    const done = jobs.filter((j) => !ACTIVE.has(j.state));
    for (const id of this.cancelling) if (!ACTIVE.has(this.jobs.get(id)?.state)) this.cancelling.delete(id);
    $('queue-list').replaceChildren(...active.map((j) => this.activeItem(j)));
    $('history-list').replaceChildren(...done.map((j) => this.historyItem(j)));
    $('queue-empty').hidden = active.length > 0;
    $('history-empty').hidden = done.length > 0;
  }

  activeItem(job) {
    const running = job.state === 'running';
    const stopping = running && (job.cancel_requested || this.cancelling.has(job.id));
    const pct = Math.round(100 * Math.min(1, Math.max(0, Number(job.progress) || 0)));
    const steps = running && job.total ? ` · step ${job.step}/${job.total}` : '';
    const firstRun = job.eta_basis === 'first_run' ? ' (first-run estimate)' : '';
    const eta = running && job.eta_s !== null && job.eta_s !== undefined ? `about ${duration(job.eta_s)} left${firstRun}` : '';
    const stage = stopping ? 'Cancelling…' : running ? stageName(job.stage, config().stage_names) || 'Starting' : 'Waiting in queue';
    const bar = el('div', { className: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
      'aria-valuenow': String(pct), 'aria-label': `${jobLabel(job)} progress` }, el('span'));
    bar.firstChild.style.width = `${pct}%`;
    const cancel = button(stopping ? 'Cancelling…' : 'Cancel', `Cancel ${jobLabel(job)}`, () => this.actions.cancel(job));
    cancel.disabled = stopping;
    const watched = job.id === this.watchedId;
    const follow = watched ? el('span', { className: 'watching', textContent: 'Opens when done' })
      : button('Open when done', `Open ${jobLabel(job)} when it is done`, () => this.actions.openWhenDone(job));
    return el('li', { className: `job${watched ? ' watched' : ''}`, dataset: { jobId: job.id, state: job.state } },
      thumbnail(job),
      el('div', { className: 'body' },
        titleRow(job, running ? `${pct}%` : STATE_NAMES.queued),
        engineLine(job),
        el('div', { className: 'stage', textContent: `${stage}${steps}` }),
        bar,
        el('div', { className: 'meta time-left', textContent: stopping ? '' : eta || (running ? 'Estimating time…' : '') }),
        el('div', { className: 'actions' }, cancel, stopping ? null : follow)));
  }

  historyItem(job) {
    const took = elapsedSeconds(job);
    const meta = [clock(job.created_at), took !== null && job.state === 'succeeded' ? `took ${duration(took)}` : '',
      job.params?.pipeline_type ? `${String(job.params.pipeline_type).replace('_', ' ')}` : '']
      .filter(Boolean).join(' · ');
    const draft = job.params?.draft_job ? this.jobs.get(job.params.draft_job) : null;
    const refined = job.params?.draft_job
      ? el('div', { className: 'meta draft', textContent: `Refined from ${draft ? jobLabel(draft) : 'a Fast draft'}` }) : null;
    const body = el('div', { className: 'body' },
      titleRow(job, STATE_NAMES[job.state] || job.state),
      engineLine(job),
      el('div', { className: 'meta', textContent: meta }),
      refined);
    if (job.state === 'failed') {
      const { text, fix } = explain(job.error);
      body.append(el('p', { className: 'error', role: 'note' }, text, fix ? el('br') : null,
        fix ? el('strong', { textContent: 'What to do: ' }) : null, fix || null));
    }
    const actions = el('div', { className: 'actions' });
    if (job.state === 'succeeded') {
      actions.append(button('Open', `Open ${jobLabel(job)}`, () => this.actions.open(job), 'primary'),
        button('Export', `Export ${jobLabel(job)}`, () => this.actions.exportJob(job)));
      if (job.engine === 'fresnel') {
        actions.append(button('Refine', `Refine ${jobLabel(job)} with TRELLIS.2, keeping its shape`,
          () => this.actions.refine(job)));
      }
    }
    actions.append(button('Use settings', `Use settings and picture of ${jobLabel(job)}`,
      () => this.actions.useSettings(job)),
    button('Delete', `Delete ${jobLabel(job)}`, () => this.actions.remove(job)));
    body.append(actions);
    return el('li', { className: `job${job.id === this.currentId ? ' current' : ''}`, dataset: { jobId: job.id, state: job.state } },
      thumbnail(job), body);
  }
}

export { ACTIVE };
