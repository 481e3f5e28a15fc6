"""Driving the app in a browser, for the tools (screenshots, viewer benchmark) and the browser tests: finding
Chromium and node, starting the real job server on a free port, and running a playwright-core script."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_SCRIPT = Path(__file__).with_name("screenshots.mjs")
BENCH_VIEWER_SCRIPT = Path(__file__).with_name("bench_viewer.mjs")
READY_PREFIX = "Genesis is running at "


def find_chromium() -> str | None:
    """Debian's Chromium (or $GENESIS_CHROMIUM)."""
    explicit = os.environ.get("GENESIS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_browser_tooling() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (REPO_ROOT / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (run `npm install` in the repository root)"
    if find_chromium() is None:
        return "Chromium is not installed (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class UiServer:
    """A job server started with `python -m gui.backend.launcher --no-window`."""

    process: subprocess.Popen
    url: str = ""
    lines: deque = field(default_factory=lambda: deque(maxlen=200))

    def log_tail(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


# the real server, as `start` runs it without a window
LAUNCHER = ("-m", "gui.backend.launcher", "--no-window")


def start_ui_server(
    models_dir: Path,
    data_dir: Path,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    server: tuple[str, ...] = LAUNCHER,
) -> UiServer:
    """Start the real server and wait for its 'Genesis is running at URL' line; `env` adds variables, `server`
    is what Python runs (any script taking `genesis serve`'s flags, e.g. tests/server/serve_fake.py and its own)."""
    cmd = [
        sys.executable,
        *server,
        "--port",
        str(free_port()),
        "--models-dir",
        str(models_dir),
        "--data-dir",
        str(data_dir),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = UiServer(process)
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            server.lines.append(line.rstrip())
            if line.startswith(READY_PREFIX) and not server.url:
                server.url = line[len(READY_PREFIX) :].strip()
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the job server did not start:\n{server.log_tail()}")
    return server


@contextmanager
def app_in_thread(app, port: int, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve the ASGI `app` on 127.0.0.1:`port` from a thread of this process (so that what a test patches
    is what it serves); yields its URL and stops it afterwards."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def run_node_script(script: Path, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENESIS_CHROMIUM": find_chromium() or ""}
    return subprocess.run(
        ["node", str(script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def write_input_image(path: Path) -> Path:
    """The tiny models' calibration object (RGBA on transparent), so the tiny model makes a real shape."""
    from tools.make_tiny_models import calibration_image

    calibration_image(opaque=False).save(path, format="PNG")
    return path
