"""`genesis backup DEST` and `genesis restore SRC`: a consistent copy of the job history and its files.

A backup folder holds `genesis.db` (one self-contained file, written with SQLite's online backup, so it is
consistent even while the server runs) and `jobs/<id>/` for every job in it. Copies are incremental: a file
already in the backup with the same size and time is not copied again. A restore adds the jobs of the
backup that the data folder lacks, with their files; it never deletes or overwrites anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from .files import JOBS_DIR, is_job_id
from .store import DB_NAME, JobStore


@dataclass
class CopyReport:
    jobs: int = 0
    files: int = 0
    bytes: int = 0


def same_file(a: Path, b: Path) -> bool:
    """Cheap identity for incremental copies: same size and (to the second) the same modification time."""
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def copy_job_folder(src: Path, dst: Path, report: CopyReport, overwrite: bool) -> None:
    """Copy the plain files of one job folder (no temporaries, no links) through a temporary name."""
    if not src.is_dir() or src.is_symlink():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.is_symlink() or not item.is_file():
            continue
        target = dst / item.name
        if target.exists() and (not overwrite or same_file(item, target)):
            continue
        tmp = dst / f".tmp-{item.name}"
        shutil.copy2(item, tmp)
        os.replace(tmp, target)
        report.files += 1
        report.bytes += item.stat().st_size


def backup(data_dir: Path, dest: Path) -> CopyReport:
    """Write the database and every job's folder of `data_dir` into the folder `dest`."""
    dest = Path(dest)
    store = JobStore(data_dir)
    try:
        report = CopyReport(jobs=store.backup(dest / DB_NAME))
        ids = store.ids()
    finally:
        store.close()
    for job_id in ids:
        if is_job_id(job_id):
            copy_job_folder(store.jobs_root / job_id, dest / JOBS_DIR / job_id, report, overwrite=True)
    return report


def restore(data_dir: Path, source: Path) -> CopyReport:
    """Add the jobs of a backup (its folder, or a bare `genesis.db`) to `data_dir`, with their files."""
    source = Path(source)
    db = source / DB_NAME if source.is_dir() else source
    if not db.is_file():
        raise FileNotFoundError(f"no {DB_NAME} in {source}")
    store = JobStore(data_dir)
    try:
        added = store.merge_from(db)
        report = CopyReport(jobs=len(added))
        for job_id in added:
            if is_job_id(job_id):
                copy_job_folder(
                    db.parent / JOBS_DIR / job_id, store.jobs_root / job_id, report, overwrite=False
                )
                store.mirror(job_id)
    finally:
        store.close()
    return report


def describe(report: CopyReport) -> str:
    return f"{report.jobs} job(s), {report.files} file(s) copied ({report.bytes / 2**20:.1f} MiB)"


def cmd_backup(args: argparse.Namespace) -> int:
    from .cli import settings_from

    report = backup(settings_from(args).data_dir, Path(args.dest))
    print(f"backed up {describe(report)} to {args.dest}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .cli import settings_from

    data_dir = settings_from(args).data_dir
    try:
        report = restore(data_dir, Path(args.source))
    except (OSError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"restored {describe(report)} into {data_dir}")
    return 0


def add_backup_commands(sub, add_location_flags) -> None:
    """The `backup` and `restore` sub-commands of the `genesis` parser."""
    p = sub.add_parser("backup", help="copy the job history and its files to a folder (safe while serving)")
    add_location_flags(p)
    p.add_argument("dest", help="backup folder (created; later backups into it copy only what changed)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser(
        "restore", help="add the jobs of a backup that the data folder lacks (deletes nothing)"
    )
    add_location_flags(p)
    p.add_argument("source", help="a backup folder, or a genesis.db file")
    p.set_defaults(func=cmd_restore)
