// Words and numbers for people: stage names, durations, sizes, and server errors with a fix.

/** A readable name for a server stage id with `names` (the config's `stage_names`; unknown ids are made
 * readable, never hidden), as `vocabulary.stage_name` words it: `export:uv unwrap` → `Exporting: unwrapping UVs`. */
export function stageName(stage, names = {}) {
  if (!stage) return '';
  const [head, ...rest] = String(stage).split(':');
  const readable = (id) => id.replace(/[_.-]+/g, ' ').trim();
  const words = names[head] || (readable(head).charAt(0).toUpperCase() + readable(head).slice(1));
  if (!rest.length) return words;
  const sub = rest.join(':');
  return `${words}: ${names[sub] || readable(sub)}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function bytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i && v < 10 ? 1 : 0)} ${units[i]}`;
}

export function count(n) {
  return Number.isFinite(n) ? n.toLocaleString('en-US') : '';
}

/** Parse the server's timestamps (ISO text or seconds since the epoch). */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const d = typeof value === 'number' ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function elapsedSeconds(job) {
  const start = toDate(job.started_at);
  const end = toDate(job.finished_at);
  return start && end ? (end - start) / 1000 : null;
}

export function clock(value) {
  const d = toDate(value);
  if (!d) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

/**
 * `{ text, fix }` for an error object `{code, message}` from the server; `hints` is the server's error table
 * (`GET /api/config` → `errors`: code → `{status, message, hint}`).
 */
export function explainError(error, hints = {}) {
  if (!error) return { text: 'Something went wrong.', fix: '' };
  const entry = hints[String(error.code || '')];
  const text = error.message || entry?.message || 'The job failed without a message.';
  return { text, fix: error.hint || entry?.hint || '' };
}
