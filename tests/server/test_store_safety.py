"""The job store never loses finished jobs: the database is the truth, but a missing, truncated, corrupt or
restored-without-WAL database never makes the server delete a job folder; jobs are re-adopted from their
`job.json`, unknown folders are kept and reported; a clean stop checkpoints the WAL; backup + restore
round-trip the history."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from gui.backend import cli
from gui.backend.app import Services
from gui.backend.config import Settings
from gui.backend.files import MANIFEST_FILE, MODEL_FILE, JobFolders
from gui.backend.store import DB_NAME, FAILED, SUCCEEDED, JobStore
from gui.backend.worker_process import EngineSpec

from .conftest import LiveServer, fake_server_cmd, submit

SPEC = EngineSpec("tests.server.fake_engine:fake_engines")


def finished_job(store: JobStore, folders: JobFolders, n: int, state: str = SUCCEEDED) -> str:
    """A job as the worker leaves it: inputs, preview, model and a record in the store."""
    job_id = f"{n:032x}"
    folders.write_bytes(job_id, "input_0.png", b"png %d" % n)
    folders.write_bytes(job_id, "preview.png", b"preview")
    store.create("trellis2", {"seed": n}, ["input_0.png", "preview.png"], job_id=job_id)
    assert store.start(job_id)
    if state == SUCCEEDED:
        folders.write_bytes(job_id, MODEL_FILE, b"glb %d" % n)
        store.succeed(job_id, {MODEL_FILE: MODEL_FILE}, {"faces": n})
    else:
        store.finish(job_id, FAILED, "engine_error", "boom")
    return job_id


def folder_contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def start_up(data: Path, caplog) -> tuple[Services, str]:
    """What the server does at start-up (without its worker process); returns its log."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        services = Services(Settings(data_dir=data, models_dir=data / "models"), SPEC)
        services.recover()
    return services, caplog.text


@pytest.fixture
def history(tmp_path):
    """A data folder with three finished jobs (the store cleanly closed)."""
    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    ids = [finished_job(store, folders, n) for n in (1, 2)] + [finished_job(store, folders, 3, FAILED)]
    store.close()
    return tmp_path, ids


def assert_history(store: JobStore, ids: list[str]) -> None:
    jobs = {job.id: job for job in store.list()}
    assert set(jobs) == set(ids)
    assert [jobs[i].state for i in ids] == [SUCCEEDED, SUCCEEDED, FAILED]
    assert jobs[ids[0]].files == {MODEL_FILE: MODEL_FILE} and jobs[ids[0]].stats == {"faces": 1}
    assert jobs[ids[2]].error_code == "engine_error"
    assert [j.id for j in store.list()] == ids[::-1], "newest first, also after re-adoption"


@pytest.mark.parametrize("damage", ["deleted", "truncated to 0", "truncated", "garbage", "emptied"])
def test_a_lost_database_never_removes_a_job_folder(history, caplog, damage):
    data, ids = history
    files_before = folder_contents(data / "jobs")
    db = data / DB_NAME
    if damage == "deleted":
        db.unlink()
    elif damage == "truncated to 0":
        db.write_bytes(b"")
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1500])
    elif damage == "garbage":
        db.write_bytes(b"this is not a database" * 300)
    else:
        sqlite3.connect(db).execute("DELETE FROM jobs").connection.commit()
    services, text = start_up(data, caplog)
    after = folder_contents(data / "jobs")
    assert set(files_before) <= set(after), "no file was deleted"
    assert all(after[k] == v for k, v in files_before.items() if not k.endswith(MANIFEST_FILE))
    assert_history(services.store, ids)
    assert "re-adopted 3 job(s)" in text
    if damage in ("truncated", "garbage"):
        aside = list(data.glob(f"{DB_NAME}.corrupt-*"))
        assert len(aside) == 1, "the damaged database is kept beside the new one"
        line = next(r.getMessage() for r in caplog.records if "could not be read" in r.getMessage())
        assert "\n" not in line and aside[0].name in line, "one line says what happened"
    services.store.close()


def test_restore_without_wal_and_unknown_folders(tmp_path, caplog):
    live = tmp_path / "live"
    store, folders = JobStore(live), JobFolders(live)
    first = finished_job(store, folders, 1)
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    later = finished_job(store, folders, 2)  # in the WAL only, as after a crash
    assert (live / (DB_NAME + "-wal")).stat().st_size > 0
    restored = tmp_path / "restored"  # the data folder copied without genesis.db-wal
    shutil.copytree(live / "jobs", restored / "jobs")
    shutil.copyfile(live / DB_NAME, restored / DB_NAME)
    stranger = restored / "jobs" / ("f" * 32)
    stranger.mkdir()
    (stranger / "notes.txt").write_text("not ours")
    (restored / "jobs" / "holiday photos").mkdir()
    services, text = start_up(restored, caplog)
    assert {j.id for j in services.store.list()} == {first, later}
    assert services.store.get(later).state == SUCCEEDED
    assert (stranger / "notes.txt").read_text() == "not ours"
    assert (restored / "jobs" / "holiday photos").is_dir()
    assert "re-adopted 1 job(s)" in text and "kept 2 folder(s)" in text and "f" * 32 in text
    services.store.close()
    store.close()


def test_unfinished_or_incomplete_folders_are_adopted_as_failed(tmp_path, caplog):
    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    done = finished_job(store, folders, 1)
    queued = "a" * 32
    folders.write_bytes(queued, "input_0.png", b"png")
    store.create("trellis2", {}, ["input_0.png"], job_id=queued)
    store.close()
    folders.path(done, MODEL_FILE).unlink()
    (tmp_path / DB_NAME).unlink()
    services, _ = start_up(tmp_path, caplog)
    for job_id in (done, queued):
        job = services.store.get(job_id)
        assert job.state == FAILED and job.error_code == "interrupted", job
    assert services.store.get(done).files == {}
    assert services.store.next_queued() is None, "nothing runs again on its own after a lost database"
    services.store.close()


def test_clean_stop_leaves_everything_in_the_database_file(tmp_path):
    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    ids = [finished_job(store, folders, n) for n in range(1, 4)]
    store.close()
    wal = tmp_path / (DB_NAME + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(tmp_path / DB_NAME, copy / DB_NAME)  # the file alone, as a naive backup would
    assert {j.id for j in JobStore(copy).list()} == set(ids)


def test_a_deleted_job_does_not_come_back(tmp_path, caplog):
    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    job_id = finished_job(store, folders, 1)
    store.delete(job_id)  # the server crashes before it removes the folder
    store.close()
    services, text = start_up(tmp_path, caplog)
    assert services.store.get(job_id) is None and folders.folder(job_id).is_dir()
    assert "kept 1 folder(s)" in text
    services.store.close()


def test_backup_and_restore_round_trip_the_history(history, tmp_path_factory, capsys):
    data, ids = history
    dest = tmp_path_factory.mktemp("backup") / "genesis-backup"
    assert cli.main(["backup", str(dest), "--data-dir", str(data)]) == 0
    assert "3 job(s)" in capsys.readouterr().out
    assert (dest / DB_NAME).is_file() and not (dest / (DB_NAME + "-wal")).exists()
    assert cli.main(["backup", str(dest), "--data-dir", str(data)]) == 0
    assert "0 file(s) copied" in capsys.readouterr().out, "a second backup copies only what changed"

    fresh = tmp_path_factory.mktemp("fresh")
    other = finished_job(JobStore(fresh), JobFolders(fresh), 9)
    assert cli.main(["restore", str(dest), "--data-dir", str(fresh)]) == 0
    assert "restored 3 job(s)" in capsys.readouterr().out
    store = JobStore(fresh)
    assert set(store.ids()) == {*ids, other}, "restore adds; it deletes nothing"
    store.delete(other)
    assert_history(store, ids)
    for job_id in ids:
        for name in ("input_0.png", "preview.png", MANIFEST_FILE):
            assert (fresh / "jobs" / job_id / name).is_file()
    assert (fresh / "jobs" / ids[0] / MODEL_FILE).read_bytes() == b"glb 1"
    assert cli.main(["restore", str(dest), "--data-dir", str(fresh)]) == 0
    assert "restored 0 job(s)" in capsys.readouterr().out, "restoring twice changes nothing"
    assert cli.main(["restore", str(tmp_path_factory.mktemp("empty")), "--data-dir", str(fresh)]) == 2


def test_live_server_survives_a_truncated_database_and_keeps_every_folder(tmp_path):
    """Between two runs of the real server the database is truncated: every job comes back."""
    server = LiveServer(fake_server_cmd(tmp_path), tmp_path)
    try:
        ids = [submit(server, {"seed": n}) for n in (1, 2)]
        for job_id in ids:
            server.wait_state(job_id, ("succeeded",))
    finally:
        server.stop()
    files_before = folder_contents(tmp_path / "jobs")
    db = tmp_path / DB_NAME
    db.write_bytes(db.read_bytes()[:2000])
    server = LiveServer(fake_server_cmd(tmp_path), tmp_path)
    try:
        jobs = {j["id"]: j for j in server.client.get("/api/jobs").json()}
        assert set(jobs) == set(ids) and all(j["state"] == "succeeded" for j in jobs.values())
        model = server.client.get(jobs[ids[0]]["result"]["model"])
        assert model.status_code == 200 and model.content == files_before[f"{ids[0]}/{MODEL_FILE}"]
        assert "could not be read" in server.log and "re-adopted 2 job(s)" in server.log
    finally:
        server.stop()
    assert set(files_before) <= set(folder_contents(tmp_path / "jobs"))
