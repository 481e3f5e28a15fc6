"""Per-job folders in the data directory, written atomically (temporary name, then rename)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREVIEW_FILE = "preview.png"  # the small picture of a job's first input, stored with its inputs
MODEL_FILE = "model.glb"  # the GLB every successful job has
MANIFEST_FILE = "job.json"  # the job's record as the store last wrote it: lets a lost database be rebuilt
JOBS_DIR = "jobs"  # under the data directory, one folder per job
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.match(value))


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

    def write_bytes(self, job_id: str, name: str, data: bytes) -> Path:
        with self.atomic(job_id, name) as tmp:
            tmp.write_bytes(data)
        return self.path(job_id, name)

    @contextmanager
    def atomic(self, job_id: str, name: str) -> Iterator[Path]:
        """Yield a temporary path in the job folder; it becomes `name` only when the block succeeds."""
        final = self.path(job_id, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
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
