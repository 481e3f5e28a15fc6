"""The job store: one SQLite database (WAL) in the data directory; the database is also the queue.

The database is the truth about which jobs exist; nothing here ever deletes a job folder. Each job's
record is mirrored to `jobs/<id>/job.json` at every change of state, so that jobs whose rows are lost (a
missing, truncated or corrupt database, or one restored without its WAL) are re-adopted from their folders.
A clean `close()` checkpoints the WAL, so `genesis.db` alone then holds everything; `backup()` writes a
consistent copy while the server runs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import error_hint, error_info
from .files import JOBS_DIR, MANIFEST_FILE, MODEL_FILE, PREVIEW_FILE, THUMBNAIL_FILE, is_job_id
from .timings import HISTORY_RUNS, KEPT_RUNS

log = logging.getLogger("genesis.store")
DB_NAME = "genesis.db"
DB_SIDE_FILES = ("-wal", "-shm")
CORRUPT_CODES = (getattr(sqlite3, "SQLITE_CORRUPT", 11), getattr(sqlite3, "SQLITE_NOTADB", 26))
MANIFEST_VERSION = 1

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = get_args(JobState)
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    engine TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    params TEXT NOT NULL,
    inputs TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '{}',
    stats TEXT NOT NULL DEFAULT '{}',
    error_code TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    eta_basis TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
CREATE TABLE IF NOT EXISTS timings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    timeline TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_kind ON timings(kind, seq);
"""
# Columns added after the first release, with their definitions (older databases gain them when opened).
ADDED_COLUMNS = {"cancel_requested": "INTEGER NOT NULL DEFAULT 0", "eta_basis": "TEXT NOT NULL DEFAULT ''"}


@dataclass
class Job:
    id: str
    engine: str
    state: str
    params: dict[str, Any]
    inputs: list[str]
    created_at: float
    stage: str = ""
    step: int = 0
    total: int = 0
    progress: float = 0.0
    eta_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    cancel_requested: bool = False
    eta_basis: str = ""  # where `eta_s` comes from: "history" (this machine's earlier jobs) or "first_run"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_api(self) -> dict[str, Any]:
        """The job as the REST API shows it (DESIGN.md)."""
        base = f"/api/jobs/{self.id}/files/"
        out: dict[str, Any] = {
            "id": self.id,
            "engine": self.engine,
            "state": self.state,
            "stage": self.stage,
            "step": self.step,
            "total": self.total,
            "progress": round(self.progress, 4),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "eta_basis": (self.eta_basis or None) if self.state == RUNNING else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "params": self.params,
            "inputs": [base + name for name in self.inputs],
            "preview": base + PREVIEW_FILE if PREVIEW_FILE in self.inputs else None,
            "cancel_requested": bool(self.cancel_requested) and self.state == RUNNING,
        }
        if self.state == FAILED or self.error_code:
            code = self.error_code or "engine_error"
            out["error"] = {"code": code, "message": self.error_message or "", "hint": error_hint(code)}
        if self.state == SUCCEEDED:
            out["result"] = {
                "files": {name: base + name for name in self.files},
                "model": base + MODEL_FILE,
                "thumbnail": base + THUMBNAIL_FILE if THUMBNAIL_FILE in self.files else None,
                "stats": self.stats,
            }
        return out


JSON_COLUMNS = ("params", "inputs", "files", "stats")
JOB_COLUMNS = tuple(Job.__dataclass_fields__)


def _row_to_job(row: sqlite3.Row) -> Job:
    """A row of `jobs` as a `Job` (every field of `Job` is a column of the same name)."""
    values = {name: row[name] for name in JOB_COLUMNS}
    return Job(**{k: json.loads(v) if k in JSON_COLUMNS else v for k, v in values.items()})


def _job_to_row(job: Job) -> tuple:
    values = {name: getattr(job, name) for name in JOB_COLUMNS}
    return tuple(json.dumps(v) if k in JSON_COLUMNS else v for k, v in values.items())


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file (not a busy or unreadable one: those are not moved aside)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in CORRUPT_CODES
    return not isinstance(exc, sqlite3.OperationalError)


def job_from_manifest(data: Any, job_id: str) -> Job | None:
    """The job a `job.json` describes, or None when it is not one of ours (or not this folder's)."""
    if not isinstance(data, dict) or data.get("id") != job_id:
        return None
    try:
        job = Job(**{name: data[name] for name in JOB_COLUMNS if name in data})
    except TypeError:
        return None
    kinds = {"engine": str, "state": str, "params": dict, "inputs": list, "files": dict, "stats": dict}
    if job.state not in get_args(JobState) or not all(
        isinstance(getattr(job, k), t) for k, t in kinds.items()
    ):
        return None
    if not isinstance(job.created_at, (int, float)) or not all(isinstance(n, str) for n in job.inputs):
        return None
    return job


@dataclass
class Adoption:
    """What start-up found in the jobs folder that the database did not list."""

    adopted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class JobStore:
    """Thread-safe access to `genesis.db`; every state change is one short transaction."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.jobs_root = self.data_dir / JOBS_DIR
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self.moved_aside: Path | None = None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._close_connections()
            self.moved_aside = self._move_aside()
            log.warning(
                "%s could not be read (%s): moved it to %s and started a new one; the job folders are "
                "kept and re-adopted",
                self.path,
                exc,
                self.moved_aside.name,
            )
            self._open()

    def _open(self) -> None:
        with self._write_lock:
            conn = self._conn()
            conn.executescript(SCHEMA)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the integrity check says: {check}")
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            for name, definition in ADDED_COLUMNS.items():  # databases written before these columns came
                if name not in columns:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")

    def _move_aside(self) -> Path:
        """Rename a damaged database (with its WAL and shared-memory files) out of the way."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        for suffix in DB_SIDE_FILES:
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
            self._connections.append(conn)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _close_connections(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local = threading.local()

    def close(self) -> None:
        """A clean stop: move everything from the WAL into `genesis.db`, then close every connection."""
        with self._write_lock:
            try:
                self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # e.g. another process still reading: its own close checkpoints
                log.warning("could not checkpoint %s: %s", self.path, exc)
            self._close_connections()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._write_lock:
            return self._conn().execute(sql, args).rowcount

    def create(
        self, engine: str, params: dict[str, Any], inputs: list[str], job_id: str | None = None
    ) -> Job:
        job = Job(
            id=job_id or uuid.uuid4().hex,
            engine=engine,
            state=QUEUED,
            params=params,
            inputs=inputs,
            created_at=time.time(),
        )
        self._write(
            "INSERT INTO jobs (id, engine, state, created_at, params, inputs) VALUES (?, ?, ?, ?, ?, ?)",
            (job.id, engine, QUEUED, job.created_at, json.dumps(params), json.dumps(inputs)),
        )
        self.mirror(job.id)
        return job

    # -- the job.json mirror -------------------------------------------------------------------------------
    def mirror(self, job_id: str) -> None:
        """Write the job's record into its folder (when the folder exists); never fails the caller."""
        folder = self.jobs_root / job_id
        job = self.get(job_id)
        if job is None or not folder.is_dir():
            return
        data = {"manifest_version": MANIFEST_VERSION, **{k: getattr(job, k) for k in JOB_COLUMNS}}
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh)
                os.replace(tmp, folder / MANIFEST_FILE)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not write %s of job %s: %s", MANIFEST_FILE, job_id, exc)

    def adopt_folders(self) -> Adoption:
        """Job folders the database does not list: re-adopted from their `job.json` (a job that was not
        final becomes failed, `interrupted`; files that are gone are dropped), otherwise left alone."""
        found = Adoption()
        if not self.jobs_root.is_dir():
            return found
        known = set(self.ids())
        candidates = []
        for folder in sorted(self.jobs_root.iterdir()):
            if (
                not folder.is_dir()
                or folder.is_symlink()
                or folder.name in known
                or folder.name.startswith(".")
            ):
                continue
            job = None
            if is_job_id(folder.name):
                try:
                    job = job_from_manifest(json.loads((folder / MANIFEST_FILE).read_text()), folder.name)
                except (OSError, ValueError):
                    job = None
            if job is None:
                found.kept.append(folder.name)
            else:
                candidates.append(self._as_adopted(job, folder))
        for job in sorted(candidates, key=lambda j: j.created_at):
            if self._insert(job):
                found.adopted.append(job.id)
                self.mirror(job.id)
        return found

    @staticmethod
    def _as_adopted(job: Job, folder: Path) -> Job:
        job.files = {k: v for k, v in job.files.items() if (folder / v).is_file()}
        if job.state == SUCCEEDED and MODEL_FILE not in job.files:
            job.state, job.error_code = FAILED, "interrupted"
            job.error_message = "Recovered from its folder, but its model file is missing."
        elif job.state not in FINAL_STATES:
            job.state, job.error_code = FAILED, "interrupted"
            job.error_message = error_info("interrupted").message
        job.eta_s = None
        job.finished_at = job.finished_at or time.time()
        return job

    def _insert(self, job: Job) -> bool:
        columns = ", ".join(JOB_COLUMNS)
        marks = ", ".join("?" * len(JOB_COLUMNS))
        return self._write(f"INSERT OR IGNORE INTO jobs ({columns}) VALUES ({marks})", _job_to_row(job)) == 1

    # -- backup ----------------------------------------------------------------------------------------------
    def backup(self, dest: Path) -> int:
        """A consistent copy of the database at `dest` (SQLite's online backup: safe while the server runs),
        as one self-contained file; returns how many jobs it holds."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{dest.name}")
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(tmp)
        try:
            self._conn().backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
            count = target.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        finally:
            target.close()
        os.replace(tmp, dest)
        return int(count)

    def merge_from(self, source: Path) -> list[str]:
        """Add the jobs of another database (a backup) that this one lacks; returns their ids. Jobs that
        are here already keep their record: a restore never deletes or rewinds a job."""
        src = sqlite3.connect(f"file:{Path(source).resolve()}?immutable=1", uri=True)
        src.row_factory = sqlite3.Row
        try:
            check = src.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"{source}: the integrity check says: {check}")
            rows = src.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        finally:
            src.close()
        added = []
        for row in rows:
            job = _row_to_job(row)
            if job.state not in FINAL_STATES:
                job.state, job.error_code = FAILED, "interrupted"
                job.error_message = error_info("interrupted").message
            if self._insert(job):
                added.append(job.id)
                self.mirror(job.id)
        return added

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, limit: int = 200) -> list[Job]:
        """Newest first (by creation: jobs re-adopted or restored later keep their place)."""
        rows = (
            self._conn()
            .execute("SELECT * FROM jobs ORDER BY created_at DESC, seq DESC LIMIT ?", (limit,))
            .fetchall()
        )
        return [_row_to_job(r) for r in rows]

    def ids(self) -> list[str]:
        return [row[0] for row in self._conn().execute("SELECT id FROM jobs ORDER BY seq")]

    def next_queued(self) -> Job | None:
        row = (
            self._conn()
            .execute("SELECT * FROM jobs WHERE state = ? ORDER BY seq LIMIT 1", (QUEUED,))
            .fetchone()
        )
        return _row_to_job(row) if row else None

    def queue_position(self, job_id: str) -> int:
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ? AND seq < (SELECT seq FROM jobs WHERE id = ?)",
                (QUEUED, job_id),
            )
            .fetchone()
        )
        return int(row[0])

    def start(self, job_id: str) -> bool:
        """Queued → running; False when the job was cancelled or deleted meanwhile."""
        return (
            self._write(
                "UPDATE jobs SET state = ?, started_at = ?, stage = 'starting' WHERE id = ? AND state = ?",
                (RUNNING, time.time(), job_id, QUEUED),
            )
            == 1
        )

    def update_progress(
        self,
        job_id: str,
        stage: str,
        step: int,
        total: int,
        progress: float,
        eta_s: float | None,
        eta_basis: str = "",
    ) -> None:
        self._write(
            "UPDATE jobs SET stage = ?, step = ?, total = ?, progress = ?, eta_s = ?, eta_basis = ? "
            "WHERE id = ? AND state = ?",
            (stage, step, total, progress, eta_s, eta_basis, job_id, RUNNING),
        )

    # -- timings: how long jobs of each kind took on this machine (`timings.py`) ----------------------------
    def add_timeline(self, kind: str, timeline: list[tuple[float, float]]) -> None:
        """Keep a finished job's timeline for its kind (the latest `KEPT_RUNS` of each kind are kept)."""
        with self._write_lock:
            conn = self._conn()
            conn.execute(
                "INSERT INTO timings (kind, recorded_at, timeline) VALUES (?, ?, ?)",
                (kind, time.time(), json.dumps(timeline)),
            )
            conn.execute(
                "DELETE FROM timings WHERE kind = ? AND seq NOT IN "
                "(SELECT seq FROM timings WHERE kind = ? ORDER BY seq DESC LIMIT ?)",
                (kind, kind, KEPT_RUNS),
            )

    def timelines(self, kind: str, limit: int = HISTORY_RUNS) -> list[list[tuple[float, float]]]:
        """The latest `limit` timelines of `kind`, newest first."""
        rows = self._conn().execute(
            "SELECT timeline FROM timings WHERE kind = ? ORDER BY seq DESC LIMIT ?", (kind, limit)
        )
        return [[(float(p), float(t)) for p, t in json.loads(row[0])] for row in rows]

    def succeed(self, job_id: str, files: dict[str, str], stats: dict[str, Any]) -> None:
        self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, stage = 'done', step = total, progress = 1, eta_s = 0, files = ?, "
            "stats = ? WHERE id = ?",
            (SUCCEEDED, time.time(), json.dumps(files), json.dumps(stats), job_id),
        )
        self.mirror(job_id)

    def finish(self, job_id: str, state: str, code: str | None = None, message: str | None = None) -> None:
        """Mark a job failed or cancelled (from queued or running)."""
        assert state in (FAILED, CANCELLED)
        changed = self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, eta_s = NULL, error_code = ?, error_message = ? "
            "WHERE id = ? AND state IN (?, ?)",
            (state, time.time(), code, message, job_id, QUEUED, RUNNING),
        )
        if changed:
            self.mirror(job_id)

    def cancel_queued(self, job_id: str) -> bool:
        cancelled = (
            self._write(
                "UPDATE jobs SET state = ?, finished_at = ?, error_code = 'cancelled', "
                "error_message = 'Cancelled before it started.' WHERE id = ? AND state = ?",
                (CANCELLED, time.time(), job_id, QUEUED),
            )
            == 1
        )
        if cancelled:
            self.mirror(job_id)
        return cancelled

    def request_cancel(self, job_id: str) -> bool:
        """Ask the worker (in whichever process) to stop the running job at its next step."""
        return (
            self._write("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = ?", (job_id, RUNNING))
            == 1
        )

    def cancel_requested(self, job_id: str) -> bool:
        row = self._conn().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def running_job_id(self) -> str | None:
        row = self._conn().execute("SELECT id FROM jobs WHERE state = ? LIMIT 1", (RUNNING,)).fetchone()
        return row[0] if row else None

    def add_file(self, job_id: str, name: str, file_name: str) -> None:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT files FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is not None:
                    files = json.loads(row["files"])
                    files[name] = file_name
                    conn.execute("UPDATE jobs SET files = ? WHERE id = ?", (json.dumps(files), job_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.mirror(job_id)

    def delete(self, job_id: str) -> bool:
        """Forget a job (its mirror first, so that a crash before the folder goes cannot bring it back)."""
        if is_job_id(job_id):
            (self.jobs_root / job_id / MANIFEST_FILE).unlink(missing_ok=True)
        return self._write("DELETE FROM jobs WHERE id = ?", (job_id,)) == 1

    def recover_after_crash(self, code: str = "interrupted") -> list[str]:
        """Jobs left `running` by a crash become failed with `code` (and its message); queued jobs stay queued."""

        rows = self._conn().execute("SELECT id FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
        ids = [r["id"] for r in rows]
        for job_id in ids:
            self.finish(job_id, FAILED, code, error_info(code).message)
        return ids
