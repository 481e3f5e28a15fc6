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
  constructor(status, code, message, hint = '') {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
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
  // Every error of the server is {"error": {"code", "message", "hint"}} (GET /api/config lists the codes).
  const data = await res.json().catch(() => null);
  if (data?.error) throw new ApiError(res.status, data.error.code, data.error.message, data.error.hint);
  throw new ApiError(res.status, 'http_error', `The server answered ${res.status} ${res.statusText}.`);
}

const modelPath = (id) => id.split('/').map(encodeURIComponent).join('/');

export const api = {
  config: () => request('GET', '/api/config'),
  health: () => request('GET', '/api/health'),
  jobs: () => request('GET', '/api/jobs'),
  job: (id) => request('GET', `/api/jobs/${encodeURIComponent(id)}`),
  cancel: (id) => request('POST', `/api/jobs/${encodeURIComponent(id)}/cancel`),
  remove: (id) => request('DELETE', `/api/jobs/${encodeURIComponent(id)}`),
  refine: (id, settings = {}) => request('POST', `/api/jobs/${encodeURIComponent(id)}/refine`, { json: settings }),
  exportJob: (id, settings) => request('POST', `/api/jobs/${encodeURIComponent(id)}/export`, { json: settings }),

  /** The Models panel's routes (`/api/models`); a model id is `org/name`, sent as two path segments. */
  models: {
    list: () => request('GET', '/api/models'),
    download: (id) => request('POST', `/api/models/${modelPath(id)}/download`),
    downloadAll: () => request('POST', '/api/models/download-all'),
    cancel: (id) => request('POST', id ? `/api/models/${modelPath(id)}/cancel` : '/api/models/cancel'),
    setToken: (token) => request('PUT', '/api/models/token', { json: { token } }),
    clearToken: () => request('DELETE', '/api/models/token'),
    chooseBackground: (id) => request('PUT', '/api/models/background', { json: { model: id } }),
  },

  /** Queue a job with `entry` of the config's engines (its route and image field); `files` in order. */
  generate(entry, files, params) {
    const form = new FormData();
    for (const file of files) form.append(entry.image_field, file, file.name || 'image.png');
    form.append('params', JSON.stringify(params));
    return request('POST', `/api/generate/${entry.route}`, { body: form });
  },

  /** The cut-out engine `engineName` will make of `file` (POST /api/preview/cutout): a PNG blob with the
   * background removed (an `ApiError` `invalid_image` says why none can be made). */
  async cutout(file, engineName) {
    const form = new FormData();
    form.append('image', file, file.name || 'image.png');
    form.append('engine', engineName);
    const res = await request('POST', '/api/preview/cutout', { body: form });
    if (!(res instanceof Response)) throw new ApiError(0, 'bad_file', 'The server sent JSON where a picture was expected.');
    return res.blob();
  },

  /** Fetch a file of a job as bytes (for the viewer and exports). */
  async fileBytes(url) {
    const res = await request('GET', url);
    if (!(res instanceof Response)) throw new ApiError(0, 'bad_file', 'The server sent JSON where a file was expected.');
    return new Uint8Array(await res.arrayBuffer());
  },

  /**
   * Server-sent events of one job: `onJob(job)` for each `events.job` event, `onDeleted()` for `events.deleted`
   * (the event names of GET /api/config). The server ends the stream when the job is final. Returns a stop function.
   */
  watch(id, events, { onJob, onDeleted }) {
    const source = new EventSource(withToken(`/api/jobs/${encodeURIComponent(id)}/events`));
    source.addEventListener(events.job, (event) => onJob(JSON.parse(event.data)));
    source.addEventListener(events.deleted, () => {
      source.close();
      onDeleted();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) return;
      source.close(); // the job list poll takes over
    };
    return () => source.close();
  },
};
