"""Live servers for the API tests: real uvicorn processes on 127.0.0.1 with their own data folders."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"Genesis is running at (http://\S+)")
FAKE_SERVER = Path(__file__).with_name("serve_fake.py")
FAKE_ENGINES = "tests.server.fake_engine:fake_engines"


@contextmanager
def app_in_process(tmp: Path) -> Iterator:
    """A `TestClient` of the real app in this process (its worker in its own) with the fake engines and the
    quick vertex-coloured export, its models and data under `tmp`, addressed as the loopback server."""
    from fastapi.testclient import TestClient

    from gui.backend.app import create_app
    from gui.backend.config import Settings
    from gui.backend.worker_process import EngineSpec

    spec = EngineSpec(FAKE_ENGINES, converter="gui.backend.export:vertex_colored_mesh")
    app = create_app(Settings(models_dir=tmp / "models", data_dir=tmp / "data"), spec)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


class LiveServer:
    """A server process; `client` talks to it; `kill()` simulates a crash (SIGKILL)."""

    def __init__(self, cmd: list[str], data_dir: Path, timeout: float = 90.0) -> None:
        self.cmd = cmd
        self.data_dir = data_dir
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines[-30:]))
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            match = READY.search(line)
            if match and not self._ready.is_set():
                self.url = match.group(1)
                self._ready.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines[-40:])

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/jobs/{job_id}").json()
            if job.get("state") in states:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {states}: {job}\n{self.log}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def fake_server_cmd(data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(FAKE_SERVER),
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--models-dir",
        str(data_dir / "models"),
        *extra,
    ]


def png_bytes(size: tuple[int, int] = (64, 64), color=(200, 40, 40, 255)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    image.paste(Image.new("RGBA", (w // 2, h // 2), color), (w // 4, h // 4))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def submit(server: LiveServer, params: dict | None = None, image: bytes | None = None) -> str:
    import json

    files = {"image": ("object.png", image or png_bytes(), "image/png")}
    r = server.client.post("/api/generate/image", files=files, data={"params": json.dumps(params or {})})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    """A server with the fast fake engines, 1 MiB upload and 100,000 pixel limits."""
    data = tmp_path_factory.mktemp("fake-data")
    server = LiveServer(fake_server_cmd(data, "--max-upload-mb", "1", "--max-pixels", "100000"), data)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """The tiny TRELLIS.2 models folder (official layout, seeded random weights), written once."""
    try:
        from tools.make_tiny_models import make_tiny_models
    except ImportError as exc:
        pytest.skip(f"tools/make_tiny_models.py is not available yet ({exc})")
    out = tmp_path_factory.mktemp("tiny-models")
    make_tiny_models(out, seed=0)
    return out


@pytest.fixture(scope="session")
def object_png() -> bytes:
    """An RGBA object on a transparent background (no background removal needed)."""
    from tools.make_tiny_models import calibration_image

    buf = io.BytesIO()
    calibration_image(opaque=False).save(buf, format="PNG")
    return buf.getvalue()
