"""Per-job folders in the data directory, written atomically (temporary name, then rename); every write
checks the free space first and turns a full disk into `DiskFull`, which says how much space is needed."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREVIEW_FILE = "preview.png"  # the small picture of a job's first input, stored with its inputs
MODEL_FILE = "model.glb"  # the GLB every successful job has
THUMBNAIL_FILE = "thumbnail.png"  # a small picture of the result, made with model.glb (older jobs lack it)
MANIFEST_FILE = "job.json"  # the job's record as the store last wrote it: lets a lost database be rebuilt
JOBS_DIR = "jobs"  # under the data directory, one folder per job
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RESERVE_FILE = ".disk-reserve"  # released when the disk fills, so that a job can still be marked failed
RESERVE_BYTES = 4 * 2**20
WRITE_MARGIN_BYTES = RESERVE_BYTES + 2**20  # kept free beyond a write's estimate: the reserve, the database


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.match(value))


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class DiskFull(OSError):
    """A write that did not fit: where, what, how much it needs (when known) and how much is free."""

    def __init__(
        self, folder: Path, what: str, needed: int | None, free: int, written: int = 0, margin: int = 0
    ) -> None:
        need = (
            f"needs about {megabytes(needed)}"
            if needed
            else f"needs more than the {megabytes(written)} written"
        )
        if margin:
            need += f" (plus {megabytes(margin)} kept free)"
        self.message = (
            f"The disk holding {folder} is full: {what} {need} and {megabytes(free)} is free. "
            "Free some space, then try again."
        )
        super().__init__(errno.ENOSPC, self.message)
        self.needed, self.free = needed, free


def free_bytes(path: Path) -> int:
    """Free space for this process on the file system of `path` (or of its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def is_disk_full(exc: BaseException | None) -> bool:
    """A full disk, however it surfaced: ENOSPC/EDQUOT, SQLite's SQLITE_FULL, or one of those as the cause."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and (
            getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_message(exc: BaseException, folder: Path, what: str) -> str:
    """What to tell the user about `exc` (a full disk while writing `what`)."""
    if isinstance(exc, DiskFull):
        return exc.message
    return DiskFull(folder, what, None, free_bytes(folder)).message


def check_space(folder: Path, needed: int, what: str) -> None:
    """Refuse a write of about `needed` bytes before it starts when the disk cannot hold it."""
    free = free_bytes(folder)
    if free < needed + WRITE_MARGIN_BYTES:
        raise DiskFull(folder, what, needed, free, margin=WRITE_MARGIN_BYTES)


class DiskReserve:
    """A small file kept in the data folder and deleted when the disk fills up, so that the database can
    still record the job's failure; it is written again once there is room."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / RESERVE_FILE

    def ensure(self) -> None:
        try:
            if self.path.exists() or free_bytes(self.path.parent) < 8 * RESERVE_BYTES:
                return
            with open(self.path, "wb") as fh:
                fh.write(b"\0" * RESERVE_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)

    def release(self) -> bool:
        try:
            self.path.unlink()
            return True
        except OSError:
            return False


class JobFolders:
    """`<data>/jobs/<id>/`: the only place job files are written; names are ours, never a client's."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / JOBS_DIR
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def path(self, job_id: str, name: str) -> Path:
        if not FILE_NAME_PATTERN.match(name) or ".." in name:
            raise ValueError(f"not a job file name: {name!r}")
        return self.folder(job_id) / name

    def real_file(self, job_id: str, name: str) -> Path | None:
        """The job's file as it really is on disk, only when it is a regular file inside the job's own
        folder, which is itself inside the jobs folder (a symbolic link out of either is refused)."""
        path = self.path(job_id, name)
        try:
            root = self.root.resolve(strict=True)
            folder = path.parent.resolve(strict=True)
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if folder.parent != root or folder.name != job_id or real.parent != folder or not real.is_file():
            return None
        return real

    def write_bytes(self, job_id: str, name: str, data: bytes) -> Path:
        with self.atomic(job_id, name, needed=len(data)) as tmp:
            tmp.write_bytes(data)
        return self.path(job_id, name)

    @contextmanager
    def atomic(self, job_id: str, name: str, needed: int = 0, what: str | None = None) -> Iterator[Path]:
        """Yield a temporary path in the job folder; it becomes `name` only when the block succeeds.
        `needed` (about how many bytes the block writes) is checked against the free space first; a
        full disk on the way is raised as `DiskFull`, after the partial file is gone."""
        final = self.path(job_id, name)
        what = what or name
        tmp: Path | None = None
        try:
            if needed:
                check_space(self.root, needed, what)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=final.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            yield tmp
            os.replace(tmp, final)
        except Exception as exc:
            if isinstance(exc, DiskFull) or not is_disk_full(exc):
                raise
            written = tmp.stat().st_size if tmp is not None and tmp.exists() else 0
            if tmp is not None:
                tmp.unlink(missing_ok=True)  # first, so that the free space reported counts it
            raise DiskFull(self.root, what, needed or None, free_bytes(self.root), written) from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def clean_temporaries(self) -> int:
        """Delete half-written files left by a crash; returns how many."""
        count = 0
        for tmp in self.root.glob("*/.tmp-*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            count += 1
        return count
