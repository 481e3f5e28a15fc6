"""A full disk: every write site that hits ENOSPC (or SQLite's SQLITE_FULL) fails its job with `disk_full`
and a message saying how much space is needed; the job always reaches a final state; uploads get 507; the
server keeps running and later jobs run once there is space again.

Fakes raise ENOSPC at each write site; where the test may mount a small tmpfs (root with CAP_SYS_ADMIN),
the real server also runs on a file system that actually fills up."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gui.backend import files, worker
from gui.backend.files import RESERVE_FILE, DiskFull, JobFolders, is_disk_full
from gui.backend.store import FAILED, SUCCEEDED

from .conftest import LiveServer, app_in_process, fake_server_cmd, png_bytes, submit
from .test_units import make_worker

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")
DB_FULL = sqlite3.OperationalError("database or disk is full")


def assert_disk_full(job, data_dir: Path) -> None:
    assert job.state == FAILED and job.error_code == "disk_full", (
        job.state,
        job.error_code,
        job.error_message,
    )
    assert "full" in job.error_message and "MB" in job.error_message and "needs" in job.error_message
    assert "Free some" in job.to_api()["error"]["hint"]
    assert list(data_dir.glob("jobs/*/.tmp-*")) == [], "no partial file is left behind"


def partial_then_full(real):
    """A writer that writes a little of its file, then finds the disk full."""

    def write(*args, **kwargs):
        target = next(a for a in (*args, *kwargs.values()) if isinstance(a, Path))
        target.write_bytes(b"partial")
        raise NO_SPACE

    return write


@pytest.mark.parametrize("site", ["generation", "model", "progress", "succeed", "finish too"])
def test_every_write_site_of_a_job_ends_it_as_disk_full(tmp_path, monkeypatch, site):
    run, queue = make_worker(tmp_path)
    store = run.store
    (tmp_path / RESERVE_FILE).write_bytes(b"\0" * 1024)
    if site == "generation":
        monkeypatch.setattr(worker, "save_generation", partial_then_full(worker.save_generation))
    elif site == "model":
        monkeypatch.setattr(worker, "export_generation", partial_then_full(worker.export_generation))
    elif site == "progress":
        monkeypatch.setattr(store, "update_progress", lambda *a, **k: (_ for _ in ()).throw(DB_FULL))
    else:
        monkeypatch.setattr(store, "succeed", lambda *a, **k: (_ for _ in ()).throw(DB_FULL))
    if site == "finish too":  # the database cannot even record the failure until the reserve is freed
        real_finish, calls = store.finish, []

        def finish(*args, **kwargs):
            calls.append(args)
            if (tmp_path / RESERVE_FILE).exists():
                raise DB_FULL
            return real_finish(*args, **kwargs)

        monkeypatch.setattr(store, "finish", finish)
    job = run.run_job(queue(seed=1))
    assert_disk_full(job, tmp_path)
    if site == "finish too":
        assert len(calls) >= 2 and not (tmp_path / RESERVE_FILE).exists(), "the reserve made room"
    monkeypatch.undo()
    assert run.run_job(queue(seed=2)).state == SUCCEEDED, "once there is space, jobs run again"


def test_free_space_is_checked_before_writing_and_the_message_says_how_much(tmp_path, monkeypatch):
    run, queue = make_worker(tmp_path)
    job = queue(seed=1)
    monkeypatch.setattr(files, "free_bytes", lambda path: 300_000)
    job = run.run_job(job)
    assert_disk_full(job, tmp_path)
    assert "0.3 MB is free" in job.error_message and "needs about" in job.error_message
    folders = JobFolders(tmp_path)
    with pytest.raises(DiskFull) as err:
        folders.write_bytes("b" * 32, "x.bin", b"\0" * 5_000_000)
    assert err.value.needed == 5_000_000 and "needs about 5.0 MB (plus 5.2 MB kept free)" in err.value.message


def test_disk_full_is_recognised_however_it_surfaces():
    assert is_disk_full(NO_SPACE) and is_disk_full(OSError(errno.EDQUOT, "quota"))
    assert is_disk_full(DB_FULL)
    try:
        try:
            raise NO_SPACE
        except OSError as exc:
            raise RuntimeError("the exporter failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "denied")) and not is_disk_full(ValueError("x"))
    assert worker.classify_failure(DB_FULL).code == "disk_full"


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    with app_in_process(tmp) as client:
        yield client, tmp / "data"


PNG = png_bytes()


def post_image(client: TestClient):
    files_ = {"image": ("a.png", PNG, "image/png")}
    return client.post("/api/generate/image", files=files_, data={"params": "{}"})


def wait_final(client: TestClient, job_id: str) -> dict:
    for _ in range(400):
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(job)


def test_uploads_exports_and_other_writes_on_a_full_disk_get_507(app_client, monkeypatch):
    client, data = app_client
    done = post_image(client).json()["job_id"]
    assert wait_final(client, done)["state"] == "succeeded"
    jobs_before = sorted(p.name for p in (data / "jobs").iterdir())
    from PIL import Image

    from gui.backend.store import JobStore

    for patch in (
        (Image.Image, "save", partial_then_full(Image.Image.save)),  # writing the stored input
        (files, "free_bytes", lambda path: 1000),  # the check before writing
        (JobStore, "create", lambda *a, **k: (_ for _ in ()).throw(DB_FULL)),  # the database
    ):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            r = post_image(client)
        assert r.status_code == 507, r.text
        body = r.json()["error"]
        assert body["code"] == "disk_full" and "full" in body["message"] and "MB" in body["message"]
        assert sorted(p.name for p in (data / "jobs").iterdir()) == jobs_before, "no folder is left"
    with monkeypatch.context() as m:
        m.setattr(files, "free_bytes", lambda path: 1000)
        r = client.post(f"/api/jobs/{done}/export", json={"format": "ply"})
    assert r.status_code == 507 and "the ply export needs about" in r.json()["error"]["message"]
    with monkeypatch.context() as m:
        m.setattr(JobStore, "delete", lambda *a, **k: (_ for _ in ()).throw(DB_FULL))
        r = client.delete(f"/api/jobs/{done}")
    assert r.status_code == 507 and r.json()["error"]["code"] == "disk_full"
    assert client.get("/api/health").json()["status"] == "ok"
    again = post_image(client)
    assert again.status_code == 202 and wait_final(client, again.json()["job_id"])["state"] == "succeeded"


# -- a real full file system (where the test may mount one) --------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (2**20, 4096, 1):
            try:
                while os.write(fd, b"\1" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_real_full_disk_fails_the_job_and_the_server_carries_on(small_disk: Path):
    data = small_disk / "data"
    server = LiveServer(fake_server_cmd(data, "--steps", "30", "--step-s", "0.1"), data)
    try:
        assert (data / RESERVE_FILE).is_file()
        job_id = submit(server)
        server.wait_state(job_id, ("running",))
        filler = fill(small_disk)
        job = server.wait_state(job_id, ("failed", "succeeded", "cancelled"), timeout=30)
        assert job["state"] == "failed" and job["error"]["code"] == "disk_full", job
        assert "MB" in job["error"]["message"]
        files_ = {"image": ("a.png", png_bytes(), "image/png")}
        r = server.client.post("/api/generate/image", files=files_, data={"params": json.dumps({})})
        assert r.status_code == 507 and r.json()["error"]["code"] == "disk_full", r.text
        assert server.client.get("/api/health").json()["status"] == "ok"
        filler.unlink()
        later = submit(server)
        assert server.wait_state(later, ("succeeded", "failed"), timeout=60)["state"] == "succeeded"
        assert server.proc.poll() is None
    finally:
        server.stop()
