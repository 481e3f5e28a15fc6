"""The Models panel's API (`/api/models`) and download manager against a fake hub: states, one download at a
time with bytes, speed and time left, cancel within a second or two and resume, the token (keyring or a 0600
file, never sent back, never logged), the background model, and the server's origin rules."""

from __future__ import annotations

import logging
import stat
import time

import pytest
from fastapi.testclient import TestClient

from gui.backend import models_download as md
from gui.backend.app import create_app
from gui.backend.config import Settings
from gui.backend.hf_token import TOKEN_FILE, TokenStore
from gui.backend.model_manager import DownloadTask, ModelManager
from gui.backend.routes_models import ModelsOut
from gui.backend.worker_process import EngineSpec
from tools.fake_hub import ACCEPTED_TOKEN, FakeHub

from .conftest import FAKE_ENGINES

GATED = "facebook/dinov3-vitl16-pretrain-lvd1689m"
BIREFNET = "ZhengPeng7/BiRefNet"
PIPELINE = "microsoft/TRELLIS.2-4B"


class FakeKeyring:
    """The three calls of the `keyring` module that `TokenStore` makes."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.saved.get((service, user))

    def set_password(self, service: str, user: str, value: str) -> None:
        self.saved[(service, user)] = value

    def delete_password(self, service: str, user: str) -> None:
        self.saved.pop((service, user))


@pytest.fixture
def hub(tiny_models):
    with FakeHub.from_models(tiny_models) as fake:
        yield fake


@pytest.fixture
def api(hub, tmp_path):
    """The app (no worker needed) with its download manager pointed at the fake hub, and the hub's own token
    sources switched off so that a machine's `hf auth login` does not leak in."""
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data", port=8741)
    app = create_app(settings, EngineSpec(FAKE_ENGINES))
    tokens = TokenStore(settings.data_dir, keyring_module=None, hub_token=lambda: None)  # the file store
    app.state.model_manager = ModelManager(settings.models_dir, tokens, endpoint=hub.url)
    client = TestClient(app, base_url="http://127.0.0.1:8741")
    yield client
    app.state.model_manager.close()


def wait(client: TestClient, done, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get("/api/models").json()
        if done(data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"timed out: {data}")


def by_id(data: dict) -> dict[str, dict]:
    return {m["id"]: m for m in data["models"]}


def test_the_list_has_every_model_with_its_facts_and_validates(api):
    data = api.get("/api/models").json()
    ModelsOut.model_validate(data)
    models = by_id(data)
    assert list(models) == [s.repo_id for s in md.model_specs()]
    assert all(m["state"] == "missing" and m["task"] is None for m in models.values())
    assert models[GATED]["gated"] and models[GATED]["page"].endswith(GATED)
    assert models[BIREFNET]["licence"] == "MIT" and models[BIREFNET]["background"]
    assert data["token"] == {"set": False, "source": None, "storage": "file"}
    assert data["background"]["in_use"] is None and data["background"]["choices"][0] == BIREFNET
    assert data["free_bytes"] > 0


def test_download_all_runs_one_at_a_time_and_gated_models_say_what_to_do(api, hub):
    hub.rate = 3_000_000
    queued = api.post("/api/models/download-all")
    assert queued.status_code == 202
    wanted = [s.repo_id for s in md.download_set(api.app.state.settings.models_dir)]
    assert queued.json()["changed"] == wanted and BIREFNET in wanted and "briaai/RMBG-2.0" not in wanted
    most_active = 0

    def finished(data: dict) -> bool:
        nonlocal most_active
        tasks = [m["task"] for m in data["models"] if m["task"]]
        most_active = max(most_active, sum(t["state"] in ("downloading", "verifying") for t in tasks))
        return all(t["state"] in ("done", "failed", "cancelled") for t in tasks)

    data = wait(api, finished)
    assert most_active == 1, "one download at a time"
    models = by_id(data)
    for repo in wanted:
        if md.find_spec(repo).gated:
            assert models[repo]["task"]["error_code"] == "token_needed"
            assert models[repo]["page"] in models[repo]["task"]["error"]
        else:
            assert models[repo]["state"] == "verified" and models[repo]["task"]["state"] == "done"
            assert models[repo]["size_exact"] and models[repo]["bytes_on_disk"] == models[repo]["size_bytes"]
    assert models[BIREFNET]["in_use"] and data["background"]["in_use"] == BIREFNET

    assert api.put("/api/models/token", json={"token": ACCEPTED_TOKEN}).json()["set"]
    assert api.post("/api/models/download-all").json()["changed"] == [GATED]
    assert (
        by_id(wait(api, lambda d: by_id(d)[GATED]["state"] == "verified"))[GATED]["task"]["state"] == "done"
    )


def test_a_download_reports_speed_and_time_left_and_cancels_within_two_seconds(api, hub):
    hub.rate = 300_000
    api.post(f"/api/models/{PIPELINE}/download")
    running = wait(api, lambda d: (by_id(d)[PIPELINE]["task"] or {}).get("speed_bps"))
    task = by_id(running)[PIPELINE]["task"]
    assert task["state"] == "downloading" and running["active"] == PIPELINE
    assert 0 < task["done_bytes"] < task["total_bytes"] and task["eta_s"] > 0
    assert 100_000 < task["speed_bps"] < 1_000_000, task["speed_bps"]

    asked = time.monotonic()
    assert api.post(f"/api/models/{PIPELINE}/cancel").json()["changed"] == [PIPELINE]
    stopped = wait(api, lambda d: by_id(d)[PIPELINE]["task"]["state"] == "cancelled", timeout=10)
    assert time.monotonic() - asked < 2.0
    model = by_id(stopped)[PIPELINE]
    assert model["state"] == "partial" and 0 < model["bytes_on_disk"] < model["size_bytes"]

    hub.rate = None
    api.post(f"/api/models/{PIPELINE}/download")
    done = by_id(wait(api, lambda d: by_id(d)[PIPELINE]["task"]["state"] == "done"))[PIPELINE]
    assert done["state"] == "verified"
    continued = {r for _, path, _, r in hub.requests if r}
    assert continued, "the second download continued with a Range request"


def test_a_queued_download_is_cancelled_at_once_and_cancel_all_stops_everything(api, hub):
    hub.rate = 200_000
    api.post(f"/api/models/{PIPELINE}/download")
    api.post(f"/api/models/{BIREFNET}/download")
    models = by_id(api.get("/api/models").json())
    assert models[BIREFNET]["task"]["state"] == "queued"
    assert api.post(f"/api/models/{BIREFNET}/cancel").json()["changed"] == [BIREFNET]
    assert by_id(api.get("/api/models").json())[BIREFNET]["task"]["state"] == "cancelled"
    api.post(f"/api/models/{BIREFNET}/download")
    assert set(api.post("/api/models/cancel").json()["changed"]) == {PIPELINE, BIREFNET}
    wait(api, lambda d: all(m["task"] is None or m["task"]["state"] == "cancelled" for m in d["models"]))


def test_unknown_models_and_bad_bodies_are_refused(api):
    r = api.post("/api/models/someone/else/download")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert "microsoft/TRELLIS.2-4B" in r.json()["error"]["message"]
    r = api.put("/api/models/background", json={"model": "someone/else"})
    assert r.status_code == 422
    assert api.put("/api/models/token", content=b"[1]").status_code == 400


def test_the_token_is_kept_in_a_file_only_the_user_reads_and_never_sent_back_or_logged(api, hub, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hf_secret_token_0123456789"
    bad = api.put("/api/models/token", json={"token": "not a token!"})
    assert bad.status_code == 422 and "not a token!" not in bad.text
    r = api.put("/api/models/token", json={"token": secret})
    assert r.json() == {"set": True, "source": "file", "storage": "file"}
    path = api.app.state.settings.data_dir / TOKEN_FILE
    assert path.read_text() == secret and stat.S_IMODE(path.stat().st_mode) == 0o600
    hub.tokens.clear()  # the hub no longer knows the token: 401
    api.post(f"/api/models/{BIREFNET}/download")
    data = wait(api, lambda d: (by_id(d)[BIREFNET]["task"] or {}).get("state") == "failed")
    assert by_id(data)[BIREFNET]["task"]["error_code"] == "wrong_token"
    assert any(had_token for _, _, had_token, _ in hub.requests), "the token went to the hub"
    everything = api.get("/api/models").text + r.text + caplog.text
    assert secret not in everything
    cleared = api.delete("/api/models/token").json()
    assert cleared["set"] is False and not path.exists()


def test_a_working_keyring_holds_the_token_instead_of_a_file(tmp_path):
    keyring = FakeKeyring()
    tokens = TokenStore(tmp_path, keyring_module=keyring, hub_token=lambda: None)
    assert tokens.set("hf_in_the_keyring_123") == "keyring"
    assert tokens.resolve() == "hf_in_the_keyring_123" and not (tmp_path / TOKEN_FILE).exists()
    assert tokens.status() == {"set": True, "source": "keyring", "storage": "keyring"}
    tokens.clear()
    assert tokens.resolve() is None and keyring.saved == {}

    class LockedKeyring(FakeKeyring):
        def set_password(self, service: str, user: str, value: str) -> None:
            raise RuntimeError("the keyring is locked")

    fallback = TokenStore(tmp_path, keyring_module=LockedKeyring(), hub_token=lambda: None)
    assert fallback.set("hf_in_the_file_12345") == "file" and fallback.resolve() == "hf_in_the_file_12345"
    hub_login = TokenStore(tmp_path / "other", keyring_module=None, hub_token=lambda: "hf_from_hf_login")
    assert hub_login.resolve() == "hf_from_hf_login" and hub_login.status()["set"]


def test_the_background_choice_is_served_and_followed(api):
    r = api.put("/api/models/background", json={"model": "briaai/RMBG-2.0"})
    assert r.status_code == 200 and r.json()["background"]["chosen"] == "briaai/RMBG-2.0"
    assert "briaai/RMBG-2.0" in api.post("/api/models/download-all").json()["changed"]
    api.post("/api/models/cancel")
    assert api.put("/api/models/background", json={"model": None}).json()["background"]["chosen"] is None


def test_requests_of_other_sites_are_refused(api):
    evil = {"Origin": "https://evil.example"}
    for method, path in (("post", f"/api/models/{PIPELINE}/download"), ("post", "/api/models/download-all")):
        r = getattr(api, method)(path, headers=evil)
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    r = api.put("/api/models/token", json={"token": "hf_from_another_site"}, headers=evil)
    assert r.status_code == 403 and not api.get("/api/models").json()["token"]["set"]
    assert api.get("/api/models").json()["active"] is None
    own = api.post(f"/api/models/{BIREFNET}/download", headers={"Origin": "http://127.0.0.1:8741"})
    assert own.status_code == 202


def test_speed_and_time_left_come_from_the_last_seconds():
    task = DownloadTask("a/b")
    for second in range(10):
        task.record("downloading", second * 1_000_000, 20_000_000, now=100.0 + second)
    assert task.speed_bps == pytest.approx(1_000_000) and task.eta_s == pytest.approx(11)
    for second in range(10, 17):  # the connection slows down: the window follows within seconds
        task.record("downloading", 9_000_000 + (second - 9) * 100_000, 20_000_000, now=100.0 + second)
    assert task.speed_bps == pytest.approx(100_000)
    task.record("verifying", 0, 20_000_000, now=120.0)
    assert task.state == "verifying"
