"""The start command brings up the server and the health endpoint answers (with a timeout)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tests.process_utils import wait_until_gone

from .conftest import REPO_ROOT, LiveServer


def start_and_check(cmd: list[str], data) -> None:
    """Start, check the server answers, stop it with SIGTERM: nothing of it may be left running."""
    server = LiveServer(cmd, data, timeout=240)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        health = server.client.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        page = server.client.get("/")
        assert page.status_code == 200 and "<" in page.text
        assert server.client.get("/api/jobs").json() == []
        summary = health.json()["summary"]
        assert "Fast ready" in summary and f"Engines: {summary}" in server.lines, server.lines
    finally:
        server.stop()
    assert server.proc.returncode is not None
    assert wait_until_gone(str(data)) == [], "SIGTERM left a process of the start command running"


def test_launcher_without_window(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "gui.backend.launcher",
        "--no-window",
        "--port",
        "0",
        "--models-dir",
        str(tmp_path / "models"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    start_and_check(cmd, tmp_path / "data")


def test_bootstrap_start_command(tmp_path):
    """`python3 bootstrap.py start` on an installed checkout (skipped before `bootstrap.py install` ran)."""
    if not (REPO_ROOT / ".bootstrap-stamps" / "project").is_file():
        pytest.skip("bootstrap.py has not set this checkout up (CI runs it through `bootstrap.py test`)")
    cmd = [
        "python3",
        str(REPO_ROOT / "bootstrap.py"),
        "start",
        "--no-window",
        "--port",
        "0",
        "--models-dir",
        str(tmp_path / "models"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    start_and_check(cmd, tmp_path / "data")


def test_binding_beyond_loopback_requires_a_token(tmp_path):
    from fastapi.testclient import TestClient

    from gui.backend.app import create_app
    from gui.backend.config import Settings
    from gui.backend.worker_process import EngineSpec

    settings = Settings(models_dir=tmp_path, data_dir=tmp_path / "data", host="0.0.0.0", port=9)
    app = create_app(settings, EngineSpec("tests.server.fake_engine:fake_engines"))
    assert settings.token, "a token is generated when none was given"
    with TestClient(app) as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/api/health").json()["error"]["code"] == "unauthorized"
        ok = client.get("/api/health", headers={"Authorization": f"Bearer {settings.token}"})
        assert ok.status_code == 200
        assert client.get(f"/api/health?token={settings.token}").status_code == 200
        cors = client.options(
            "/api/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in cors.headers
        own = client.options(
            "/api/jobs", headers={"Origin": "http://localhost:9", "Access-Control-Request-Method": "GET"}
        )
        assert own.headers.get("access-control-allow-origin") == "http://localhost:9"


def test_window_falls_back_to_the_browser_without_electron(monkeypatch, capsys):
    from gui.backend import launcher

    opened = []
    monkeypatch.setattr(launcher, "electron_binary", lambda: None)
    monkeypatch.setattr(launcher.webbrowser, "open", lambda url: opened.append(url) or True)

    class Started:
        started, should_exit, url = True, False, "http://127.0.0.1:1234"
        settings = SimpleNamespace(token=None)

    server = Started()
    launcher.run_window(server, force_browser=False)
    assert opened == ["http://127.0.0.1:1234"] and not server.should_exit
    assert "browser" in capsys.readouterr().out


def test_window_falls_back_when_electron_exits_at_once(monkeypatch, tmp_path):
    from gui.backend import launcher

    fake = tmp_path / "electron"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    opened = []
    monkeypatch.setattr(launcher, "electron_binary", lambda: fake)
    monkeypatch.setattr(launcher.webbrowser, "open", lambda url: opened.append(url) or True)

    class Started:
        started, should_exit, url = True, False, "http://127.0.0.1:1234"
        settings = SimpleNamespace(token=None)

    launcher.run_window(Started(), force_browser=False)
    assert opened == ["http://127.0.0.1:1234"]


def test_the_window_gets_the_token_and_closes_with_the_server(monkeypatch, tmp_path):
    from gui.backend import launcher

    seen = tmp_path / "token"
    fake = tmp_path / "electron"
    fake.write_text(f'#!/bin/sh\nprintf "%s" "$GENESIS_TOKEN" > {seen}\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setattr(launcher, "electron_binary", lambda: fake)

    class Started:
        started, should_exit, url = True, False, "http://127.0.0.1:1234"
        settings = SimpleNamespace(token="s3cret")

    server, windows = Started(), []
    launcher.run_window(server, force_browser=False, windows=windows)
    assert seen.read_text() == "s3cret"
    assert len(windows) == 1 and windows[0].returncode == 0
    assert server.should_exit, "closing the window stops the server"


def test_install_says_what_it_did_and_whether_the_desktop_window_can_open(tmp_path, monkeypatch):
    """The set-up ends with what it did; a missing Electron binary is said once, with what works instead."""
    sys.path.insert(0, str(REPO_ROOT))
    import bootstrap

    monkeypatch.setattr(bootstrap, "ROOT", tmp_path)
    missing = bootstrap.electron_summary()
    assert "could not be downloaded" in missing and "browser" in missing and "install" not in missing
    electron = tmp_path / "gui" / "electron" / "node_modules" / "electron"
    (electron / "dist").mkdir(parents=True)
    (electron / "path.txt").write_text("electron")
    assert bootstrap.electron_summary() == "desktop window (Electron): installed"
    monkeypatch.setattr(bootstrap, "DONE", [])
    monkeypatch.setattr(bootstrap, "VENV", tmp_path / ".venv")
    (tmp_path / ".venv").mkdir()
    monkeypatch.setattr(bootstrap, "venv_python", lambda: tmp_path / ".venv" / "python")
    (tmp_path / ".venv" / "python").write_text("")
    bootstrap.ensure_venv()
    assert bootstrap.DONE == ["virtual environment .venv: already there"]
