// REST client for the Genesis job server (DESIGN.md "REST API"). Same-origin by default; a server
// that requires a token is opened as `http://host:port/?token=...` and the token rides along.

const TOKEN_KEY = 'genesis.token';

function readToken() {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const token = readToken();

/** An error the server (or the network) reported, in words a person understands. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A URL of the server with the access token attached where one is in use (images, downloads, SSE). */
export function withToken(url) {
  if (!token || !url) return url;
  const u = new URL(url, location.href);
  u.searchParams.set('token', token);
  return u.pathname + u.search;
}

async function request(method, path, { body, json } = {}) {
  const headers = {};
  if (token) headers['X-Genesis-Token'] = token;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body });
  } catch {
    throw new ApiError(0, 'network', 'The Genesis server cannot be reached. Is it still running?');
  }
  if (res.ok) {
    const type = res.headers.get('content-type') || '';
    return type.includes('application/json') ? res.json() : res;
  }
  let code = `http_${res.status}`;
  let message = `The server answered ${res.status} ${res.statusText}.`;
  try {
    const data = await res.json();
    if (data?.error) {
      code = data.error.code || code;
      message = data.error.message || message;
    } else if (data?.detail) {
      message = typeof data.detail === 'string' ? data.detail : JSON.stringify(data.detail);
    }
  } catch { /* not JSON: keep the generic message */ }
  throw new ApiError(res.status, code, message);
}

export const api = {
  health: () => request('GET', '/api/health'),
  jobs: () => request('GET', '/api/jobs'),
  job: (id) => request('GET', `/api/jobs/${encodeURIComponent(id)}`),
  cancel: (id) => request('POST', `/api/jobs/${encodeURIComponent(id)}/cancel`),
  remove: (id) => request('DELETE', `/api/jobs/${encodeURIComponent(id)}`),
  exportJob: (id, settings) => request('POST', `/api/jobs/${encodeURIComponent(id)}/export`, { json: settings }),

  /** Queue a job: `engine` is image | multiview | fast; `files` are File/Blob objects in order. */
  generate(engine, files, params) {
    const form = new FormData();
    const field = engine === 'multiview' ? 'images' : 'image';
    for (const file of files) form.append(field, file, file.name || 'image.png');
    form.append('params', JSON.stringify(params));
    return request('POST', `/api/generate/${engine}`, { body: form });
  },

  /** Fetch a file of a job as bytes (for the viewer and exports). */
  async fileBytes(url) {
    const res = await request('GET', url);
    if (!(res instanceof Response)) throw new ApiError(0, 'bad_file', 'The server sent JSON where a file was expected.');
    return new Uint8Array(await res.arrayBuffer());
  },

  /** Server-sent events of one job; `onJob(job)` for each update. Returns a function that stops it. */
  watch(id, onJob) {
    const source = new EventSource(withToken(`/api/jobs/${encodeURIComponent(id)}/events`));
    const handle = (event) => {
      try {
        const job = JSON.parse(event.data);
        if (job && job.id) onJob(job);
        if (job && ['succeeded', 'failed', 'cancelled'].includes(job.state)) source.close();
      } catch { /* keep-alive or a non-JSON event */ }
    };
    source.onmessage = handle;
    for (const name of ['job', 'progress', 'update', 'end', 'done']) source.addEventListener(name, handle);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) return;
      source.close(); // the job list poll takes over
    };
    return () => source.close();
  },
};
