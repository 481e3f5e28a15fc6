'use strict';
// The job server as the desktop shell sees it: where it is (a configured URL or one we start from
// the project's .venv), waiting for /api/health, and stopping it. Plain Node, no Electron, so the
// node test runner exercises it directly.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const READY_LINE = /Genesis is running at (\S+)/;

class BackendError extends Error {
  /** A start-up failure with a plain-words `message`, a suggested `fix` and the server's last output. */
  constructor(message, fix, detail = '') {
    super(message);
    this.name = 'BackendError';
    this.fix = fix;
    this.detail = detail;
  }
}

/** The .venv interpreter of the repository (override with GENESIS_PYTHON). */
function venvPython(root = REPO_ROOT, platform = process.platform, env = process.env) {
  if (env.GENESIS_PYTHON) return env.GENESIS_PYTHON;
  return platform === 'win32'
    ? path.join(root, '.venv', 'Scripts', 'python.exe')
    : path.join(root, '.venv', 'bin', 'python');
}

/** True for this machine's names: 127.0.0.0/8, localhost, ::1 (as `URL.hostname` spells them). */
function isLoopbackHost(hostname) {
  return ['localhost', '[::1]', '::1'].includes(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Whether `url` belongs to the origin of `base`: parsed scheme, host and port compared, never string
 * prefixes (`http://127.0.0.1:PORT@other.host/` is other.host). URLs carrying user info are refused.
 */
function sameOrigin(url, base) {
  try {
    const a = new URL(url);
    const b = new URL(base);
    return !a.username && !a.password && a.protocol === b.protocol && a.hostname === b.hostname
      && a.port === b.port && ['http:', 'https:'].includes(a.protocol);
  } catch {
    return false;
  }
}

const flagValue = (argv, name) => {
  const flag = argv.find((a) => a.startsWith(`--${name}=`));
  return flag ? flag.slice(name.length + 3) : undefined;
};

/**
 * Decide how to reach the server: `--backend-url=URL` or GENESIS_BACKEND_URL connects to a running
 * one; otherwise we start `python -m gui.backend.launcher --no-window` from the project's .venv.
 * The access token comes from `--backend-token=` or GENESIS_TOKEN (the launcher's environment, which a
 * spawned server shares). A backend on another machine must use https, unless the user opts in with
 * `--allow-insecure-backend` or GENESIS_ALLOW_INSECURE_BACKEND=1.
 */
function resolveBackend({ argv = process.argv, env = process.env, root = REPO_ROOT, platform } = {}) {
  const url = flagValue(argv, 'backend-url') ?? env.GENESIS_BACKEND_URL;
  const token = flagValue(argv, 'backend-token') ?? env.GENESIS_TOKEN ?? null;
  if (!url) return { mode: 'spawn', python: venvPython(root, platform, env), cwd: root, token };
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackendError(`The backend address "${url}" is not a valid URL.`,
      'Use a full address such as http://127.0.0.1:8000.');
  }
  if (!['http:', 'https:'].includes(parsed.protocol)) {
    throw new BackendError(`The backend address "${url}" must start with http:// or https://.`,
      'Use a full address such as http://127.0.0.1:8000.');
  }
  if (parsed.username || parsed.password) {
    throw new BackendError(`The backend address "${url}" must not carry a user name or password.`,
      'Give the access token with --backend-token (or GENESIS_TOKEN) instead.');
  }
  const insecureOk = argv.includes('--allow-insecure-backend') || env.GENESIS_ALLOW_INSECURE_BACKEND === '1';
  if (parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname) && !insecureOk) {
    throw new BackendError(`The backend at ${parsed.origin} is on another machine and uses plain http.`,
      'Serve it over https (for example behind a reverse proxy), or start the window with '
      + '--allow-insecure-backend if you trust the network.');
  }
  return { mode: 'connect', url: parsed.origin, token };
}

/** Request headers that carry the access token (none without one). */
function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The address the window opens: the server's page, with the token for the renderer to keep. */
function pageUrl(url, token) {
  const page = new URL('/', url);
  if (token) page.searchParams.set('token', token);
  return page.href;
}

/** A TCP port on 127.0.0.1 that is free right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Start the job server. Returns `{ child, url, output }`; `output()` is the recent log text and
 * `onLine(fn)` reports every line the server prints (the splash shows them as "what is loading").
 */
function startServer({ python, cwd = REPO_ROOT, port, env = process.env, extraArgs = [], spawnImpl = spawn }) {
  if (!python || (path.isAbsolute(python) && !fs.existsSync(python))) {
    throw new BackendError('The Python environment of Genesis was not found.',
      'Run "python3 bootstrap.py install" in the Genesis folder, then start the app again.',
      `looked for ${python}`);
  }
  const args = ['-m', 'gui.backend.launcher', '--no-window', '--port', String(port),
    ...extraArgs];
  const child = spawnImpl(python, args, {
    cwd, env: { ...env, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true,
  });
  const lines = [];
  const listeners = new Set();
  let pending = '';
  const take = (chunk) => {
    pending += chunk.toString();
    const parts = pending.split(/\r?\n/);
    pending = parts.pop();
    for (const line of parts.filter((l) => l.trim())) {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      for (const fn of listeners) fn(line);
    }
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    output: () => lines.slice(-20).join('\n'),
    onLine: (fn) => listeners.add(fn),
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Poll `${url}/api/health` until it answers 200 with JSON. Fails with a BackendError when the
 * server process exits first or `timeoutMs` passes. `onStatus(text)` gets progress for the splash.
 */
async function waitForHealth(url, { timeoutMs = 120000, intervalMs = 250, server = null, onStatus = () => {},
  fetchImpl = globalThis.fetch, token = null } = {}) {
  const deadline = Date.now() + timeoutMs;
  let exited = null;
  const child = server?.child;
  const onExit = (code, signal) => { exited = { code, signal }; };
  child?.once('exit', onExit);
  try {
    let lastError = 'no answer yet';
    for (;;) {
      if (exited) {
        throw new BackendError(
          `The Genesis server stopped while starting (exit ${exited.code ?? exited.signal}).`,
          'Run "python3 bootstrap.py install" to repair the installation; the log below says what failed.',
          server.output());
      }
      try {
        const res = await fetchImpl(`${url}/api/health`, {
          signal: AbortSignal.timeout(Math.max(1000, intervalMs * 4)), headers: authHeaders(token),
        });
        if (res.ok) return await res.json();
        if (res.status === 401) {
          throw new BackendError(`The Genesis server at ${url} requires an access token.`,
            'Start the window with --backend-token=TOKEN (or set GENESIS_TOKEN) as printed by the server.');
        }
        lastError = `HTTP ${res.status}`;
      } catch (err) {
        if (err instanceof BackendError) throw err;
        lastError = err.cause?.code || err.message;
      }
      if (Date.now() >= deadline) {
        throw new BackendError(
          `The Genesis server did not answer at ${url} within ${Math.round(timeoutMs / 1000)} s (${lastError}).`,
          server
            ? 'Start it by hand with "python3 bootstrap.py start" to see what it is waiting for.'
            : 'Check that the server at this address is running and reachable from this computer.',
          server ? server.output() : '');
      }
      onStatus(server ? 'Starting the Genesis server…' : `Connecting to ${url}…`);
      await sleep(intervalMs);
    }
  } finally {
    child?.removeListener('exit', onExit);
  }
}

/** Ask the server to stop (SIGTERM), then force it after `graceMs`. Resolves once it has exited. */
function stopServer(child, { graceMs = 5000 } = {}) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

module.exports = {
  BackendError, READY_LINE, REPO_ROOT, authHeaders, freePort, isLoopbackHost, pageUrl, resolveBackend, sameOrigin,
  startServer, stopServer, venvPython, waitForHealth,
};
