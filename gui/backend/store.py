"""The job store: one SQLite database (WAL) in the data directory; the database is also the queue."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import error_hint, error_info
from .files import MODEL_FILE, PREVIEW_FILE

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
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
"""


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
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "params": self.params,
            "inputs": [base + name for name in self.inputs],
            "preview": base + PREVIEW_FILE if PREVIEW_FILE in self.inputs else None,
        }
        if self.state == FAILED or self.error_code:
            code = self.error_code or "engine_error"
            out["error"] = {"code": code, "message": self.error_message or "", "hint": error_hint(code)}
        if self.state == SUCCEEDED:
            out["result"] = {
                "files": {name: base + name for name in self.files},
                "model": base + MODEL_FILE,
                "stats": self.stats,
            }
        return out


JSON_COLUMNS = ("params", "inputs", "files", "stats")


def _row_to_job(row: sqlite3.Row) -> Job:
    """A row of `jobs` as a `Job` (every field of `Job` is a column of the same name)."""
    values = {name: row[name] for name in Job.__dataclass_fields__}
    return Job(**{k: json.loads(v) if k in JSON_COLUMNS else v for k, v in values.items()})


class JobStore:
    """Thread-safe access to `genesis.db`; every state change is one short transaction."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "genesis.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._write_lock:
            conn = self._conn()
            conn.executescript(SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "cancel_requested" not in columns:  # databases written before cancellation moved here
                conn.execute("ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
        return conn

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
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, limit: int = 200) -> list[Job]:
        rows = self._conn().execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [_row_to_job(r) for r in rows]

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
        self, job_id: str, stage: str, step: int, total: int, progress: float, eta_s: float | None
    ) -> None:
        self._write(
            "UPDATE jobs SET stage = ?, step = ?, total = ?, progress = ?, eta_s = ? WHERE id = ? AND state = ?",
            (stage, step, total, progress, eta_s, job_id, RUNNING),
        )

    def succeed(self, job_id: str, files: dict[str, str], stats: dict[str, Any]) -> None:
        self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, stage = 'done', step = total, progress = 1, eta_s = 0, files = ?, "
            "stats = ? WHERE id = ?",
            (SUCCEEDED, time.time(), json.dumps(files), json.dumps(stats), job_id),
        )

    def finish(self, job_id: str, state: str, code: str | None = None, message: str | None = None) -> None:
        """Mark a job failed or cancelled (from queued or running)."""
        assert state in (FAILED, CANCELLED)
        self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, eta_s = NULL, error_code = ?, error_message = ? "
            "WHERE id = ? AND state IN (?, ?)",
            (state, time.time(), code, message, job_id, QUEUED, RUNNING),
        )

    def cancel_queued(self, job_id: str) -> bool:
        return (
            self._write(
                "UPDATE jobs SET state = ?, finished_at = ?, error_code = 'cancelled', "
                "error_message = 'Cancelled before it started.' WHERE id = ? AND state = ?",
                (CANCELLED, time.time(), job_id, QUEUED),
            )
            == 1
        )

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

    def delete(self, job_id: str) -> bool:
        return self._write("DELETE FROM jobs WHERE id = ?", (job_id,)) == 1

    def recover_after_crash(self, code: str = "interrupted") -> list[str]:
        """Jobs left `running` by a crash become failed with `code` (and its message); queued jobs stay queued."""

        rows = self._conn().execute("SELECT id FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
        ids = [r["id"] for r in rows]
        for job_id in ids:
            self.finish(job_id, FAILED, code, error_info(code).message)
        return ids
