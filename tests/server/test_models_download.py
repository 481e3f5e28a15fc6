"""Fetching models (`models_download`) against a fake hub (`tools/fake_hub.py`, serving the tiny models): only
the files the app needs, checksums verified, an interrupted download continued with HTTP Range, one-line errors
for no network, a refused token, a licence not accepted and a full disk; `genesis models download` offline."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from gui.backend import models_download as md
from tools.fake_hub import ACCEPTED_TOKEN, FakeHub

from .conftest import REPO_ROOT

BIREFNET = "ZhengPeng7/BiRefNet"
GATED = "facebook/dinov3-vitl16-pretrain-lvd1689m"


@pytest.fixture
def hub(tiny_models):
    with FakeHub.from_models(tiny_models) as fake:
        yield fake


def fetch(hub: FakeHub, models, repo_id: str, token: str | None = None, **kw) -> None:
    md.fetch_model(md.find_spec(repo_id), md.local_folder(models, repo_id), token, endpoint=hub.url, **kw)


def state(models, repo_id: str) -> str:
    return md.model_state(models, md.find_spec(repo_id), md.presence(models))


def test_the_model_list_is_the_pipelines_plus_the_licence_clean_background_model():
    from trellis2.pipelines.model_check import DEFAULT_REPOSITORIES
    from trellis2.pipelines.model_paths import GATED_REPOSITORIES

    ids = [s.repo_id for s in md.model_specs()]
    assert [i for i in ids if i != BIREFNET] == list(DEFAULT_REPOSITORIES)
    assert {s.repo_id for s in md.model_specs() if s.gated} == set(GATED_REPOSITORIES)
    birefnet = md.find_spec(BIREFNET)
    assert birefnet.licence == "MIT" and not birefnet.gated and birefnet.background
    assert md.background_models()[0] == BIREFNET, "the licence-clean choice comes first"
    assert all(s.purpose and s.size_hint > 0 for s in md.model_specs())


def test_a_download_fetches_the_needed_files_verifies_them_and_loads_with_the_background_loader(
    hub, tmp_path
):
    from trellis2.pipelines.background_removal import BiRefNet

    seen = []
    fetch(hub, tmp_path, BIREFNET, progress=lambda phase, done, total: seen.append((phase, done, total)))
    folder = tmp_path / BIREFNET
    assert not (folder / "onnx").exists(), "files outside the allow patterns are not fetched"
    assert state(tmp_path, BIREFNET) == md.VERIFIED
    assert md.background_model(tmp_path) == BIREFNET
    total = sum(len(d) for n, d in hub.repos[BIREFNET].files.items() if not n.startswith("onnx/"))
    assert seen[-1] == ("verifying", total, total)
    assert max(d for p, d, _ in seen if p == "downloading") == total
    assert not any(hub.cdn_auth) and len(hub.cdn_auth) > 0, "large files come from the CDN, without a token"
    recorded = json.loads((folder / md.VERIFIED_FILE).read_text())["files"]
    assert set(recorded) == {n for n in hub.repos[BIREFNET].files if not n.startswith("onnx/")}
    mask = BiRefNet(folder)  # MIT BiRefNet: the same architecture and loader as RMBG-2.0
    assert mask.model is not None


def test_a_cancelled_download_continues_where_it_stopped(hub, tmp_path):
    repo = "microsoft/TRELLIS.2-4B"
    total = sum(len(d) for d in hub.repos[repo].files.values())
    hub.rate = 400_000
    cancel = threading.Event()
    progress: list[int] = []

    def watch(phase: str, done: int, total_: int) -> None:
        progress.append(done)
        if done > total // 4:
            cancel.set()

    with pytest.raises(md.Cancelled):
        fetch(hub, tmp_path, repo, cancel=cancel, progress=watch)
    kept = md.bytes_on_disk(tmp_path / repo, md.manifest_files(tmp_path / repo))
    assert total // 4 < kept < total
    assert state(tmp_path, repo) == md.PARTIAL
    assert md.local_size(tmp_path, md.find_spec(repo)) == (total, True, kept)

    hub.rate, hub.requests[:] = None, []
    fetch(hub, tmp_path, repo)
    ranges = {r for _, _, _, r in hub.requests if r}  # one file continued (asked of the hub, then its CDN)
    assert len(ranges) == 1 and int(ranges.pop().removeprefix("bytes=").rstrip("-")) > 0
    assert state(tmp_path, repo) == md.VERIFIED
    assert not (tmp_path / repo / md.PARTIAL_DIR).exists()


def test_a_file_that_does_not_match_its_checksum_is_deleted_and_reported(hub, tmp_path):
    repo = "microsoft/TRELLIS-image-large"
    name = next(n for n in hub.repos[repo].files if n.endswith(".safetensors"))
    hub.corrupt.add(name)
    with pytest.raises(md.DownloadError) as failure:
        fetch(hub, tmp_path, repo)
    assert failure.value.code == "checksum" and name in failure.value.message
    assert not (tmp_path / repo / name).exists() and state(tmp_path, repo) != md.VERIFIED
    hub.corrupt.clear()
    fetch(hub, tmp_path, repo)
    assert state(tmp_path, repo) == md.VERIFIED


@pytest.mark.parametrize(
    ("token", "accepted", "code", "words"),
    [
        (None, set(), "token_needed", "accept its licence at"),
        ("hf_not_a_known_token", set(), "wrong_token", "refused the token (401)"),
        ("hf_known_token_no_licence", set(), "licence_not_accepted", "refused (403)"),
    ],
)
def test_gated_models_fail_with_one_line_saying_what_to_do(hub, tmp_path, token, accepted, code, words):
    hub.tokens["hf_known_token_no_licence"] = accepted
    with pytest.raises(md.DownloadError) as failure:
        fetch(hub, tmp_path, GATED, token)
    message = failure.value.message
    assert failure.value.code == code and words in message
    assert "\n" not in message and (token is None or token not in message)
    if code != "wrong_token":
        assert md.model_page(GATED, hub.url) in message, "the licence link is in the message"
    assert state(tmp_path, GATED) == md.MISSING
    fetch(hub, tmp_path, GATED, ACCEPTED_TOKEN)
    assert state(tmp_path, GATED) == md.VERIFIED


def test_a_download_that_does_not_fit_on_the_disk_does_not_start(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(md, "free_bytes", lambda folder: 10_000)
    with pytest.raises(md.DownloadError) as failure:
        fetch(hub, tmp_path, "microsoft/TRELLIS.2-4B")
    assert failure.value.code == "disk_full" and "Not enough disk space" in failure.value.message
    assert not any("/resolve/" in path for _, path, _, _ in hub.requests), "no file was requested"


def test_a_disk_that_fills_up_while_downloading_says_so(hub, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(md, "fetch_file", full)
    with pytest.raises(md.DownloadError) as failure:
        fetch(hub, tmp_path, BIREFNET)
    assert failure.value.code == "disk_full" and "is full" in failure.value.message


def test_an_unreachable_hub_is_one_line(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(md.DownloadError) as failure:
        md.fetch_model(md.find_spec(BIREFNET), tmp_path / BIREFNET, None, endpoint=endpoint)
    assert failure.value.code == "no_network" and "cannot be reached" in failure.value.message
    assert time.monotonic() - started < 60


def test_an_unreachable_hub_is_one_line_and_exit_code_1(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2"}
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [
        sys.executable,
        "-m",
        "gui.backend.cli",
        "models",
        "download",
        "--yes",
        "--models-dir",
        str(tmp_path / "models"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be reached" in errors[0], done.stderr


def test_the_cli_stores_the_token_and_chooses_the_background_model(tmp_path):
    where = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    run = [sys.executable, "-m", "gui.backend.cli", "models"]
    env = {**os.environ, "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")}
    kw = {"cwd": REPO_ROOT, "env": env, "capture_output": True, "text": True}
    stored = subprocess.run([*run, "token", *where], input="hf_from_the_cli_123\n", **kw)
    assert stored.returncode == 0 and "hf_from_the_cli_123" not in stored.stdout + stored.stderr
    token_file = tmp_path / "data" / "hf-token"
    if token_file.exists():  # no working keyring here
        assert token_file.read_text() == "hf_from_the_cli_123" and token_file.stat().st_mode & 0o077 == 0
    assert "token: set" in stored.stdout
    assert "token: not set" in subprocess.run([*run, "token", "--clear", *where], **kw).stdout
    chosen = subprocess.run([*run, "use", "briaai/RMBG-2.0", *where], **kw)
    assert chosen.returncode == 0 and md.chosen_background(tmp_path / "models") == "briaai/RMBG-2.0"
    assert subprocess.run([*run, "use", "someone/else", *where], **kw).returncode == 2


def test_downloads_switched_off_say_so_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""}
    cmd = [sys.executable, "-m", "gui.backend.cli", "models", "download", "ZhengPeng7/BiRefNet", "--yes"]
    cmd += ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0], done.stderr


def test_the_cli_downloads_from_the_hub_and_lists_the_states(hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": ""}
    env.pop("HF_HUB_OFFLINE", None)
    where = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    run = [sys.executable, "-m", "gui.backend.cli", "models"]
    got = subprocess.run(
        [*run, "download", BIREFNET, "--yes", *where], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    listing = subprocess.run([*run, *where], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    line = next(x for x in listing.stdout.splitlines() if BIREFNET in x)
    assert "verified" in line and "MIT" in line and "in use" in line
    assert "missing" in next(x for x in listing.stdout.splitlines() if GATED in x)
    assert listing.returncode == 1, "models the pipeline needs are missing"


def test_network_errors_are_told_apart_from_other_failures():
    class ConnectError(Exception):  # the name the HTTP libraries give a failed connection
        pass

    wrapped = RuntimeError("request failed")
    wrapped.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert md.is_network_error(ConnectError("refused"))
    assert md.is_network_error(wrapped)
    assert md.is_network_error(ConnectionRefusedError())
    assert not md.is_network_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not md.is_network_error(ValueError("bad checksum"))


def test_the_background_model_in_use_follows_the_choice_and_what_is_installed(hub, tmp_path):
    rmbg = "briaai/RMBG-2.0"
    assert md.background_model(tmp_path) is None and md.wanted_background(tmp_path) == BIREFNET
    fetch(hub, tmp_path, rmbg, ACCEPTED_TOKEN)
    assert md.background_model(tmp_path) == rmbg, "the one installed"
    fetch(hub, tmp_path, BIREFNET)
    assert md.background_model(tmp_path) == BIREFNET, "both installed: the licence-clean one"
    md.choose_background(tmp_path, rmbg)
    assert md.background_model(tmp_path) == rmbg and md.wanted_background(tmp_path) == rmbg
    assert [s.repo_id for s in md.download_set(tmp_path) if s.background] == [rmbg]
    with pytest.raises(KeyError):
        md.choose_background(tmp_path, "someone/else")
