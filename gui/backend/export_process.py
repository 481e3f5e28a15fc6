"""A job's export in a process of its own, so that a cancel holds in every stage: UV unwrap and texture baking
run in native code that cannot be interrupted, so the worker kills this process instead of waiting for the next
progress call, and starts a fresh one for the next job.

The process is started ahead of time (it imports torch and the export modules while the engine computes), reads
the generation the worker has just saved, and writes the asset to the path it is given (the worker makes that
path atomic and removes what a killed export leaves behind)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis2.progress import JobCancelled

from .export import ProgressFn
from .params import ExportParams
from .process_lifetime import die_with_parent

log = logging.getLogger("genesis.export")
POLL_S = 0.05  # how often the worker looks at the cancel flag while the export runs
PROGRESS_INTERVAL_S = 0.05  # the export reports at most this often (and always the last step of a stage)
TEMPORARY_PREFIX = ".tmp-"  # what `files.JobFolders.atomic` and `export.write_asset` name half-written files


class ExportCrashed(RuntimeError):
    """The export process ended without an answer (killed by the system, a crash in a native library)."""


@dataclass(frozen=True)
class ExportTask:
    """One export: the stored generation, the settings and the file to write (and the picture of the result to
    write, when there is one to make)."""

    generation: Path
    params: ExportParams
    fmt: str
    destination: Path
    thumbnail: Path | None = None


def export_main(conn, device: str | None, converter: str | None, parent_pid: int, lifeline) -> None:
    """Entry point of the export process: answer `ExportTask`s until told to stop (None) or orphaned."""
    die_with_parent(parent_pid, lifeline)
    import torch

    from .export import has_ovoxel_export
    from .worker_process import resolve

    if has_ovoxel_export():  # import now, while the engine computes, not when the export starts
        import o_voxel.postprocess  # noqa: F401
    convert = resolve(converter) if converter else None
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        answer(conn, task, target, convert)


def reporter(conn) -> ProgressFn:
    """A progress callback that sends `(stage, step, total)` over `conn`, at most every `PROGRESS_INTERVAL_S`."""
    last = [0.0]

    def progress(stage: str, step: int, total: int) -> None:
        now = time.monotonic()
        if step >= total or now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            conn.send(("progress", stage, step, total))

    return progress


def answer(conn, task: ExportTask, device: str, convert) -> None:
    """Run one export in the export process and send its outcome: `("done", stats)` or `("error", exc)`."""
    import torch

    from .export import export_generation
    from .generation import load_generation

    try:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        meshes = load_generation(task.generation, device=device)
        stats = export_generation(
            meshes, task.params, task.fmt, task.destination, reporter(conn), convert, task.thumbnail
        )
        if torch.cuda.is_available():
            stats["peak_vram_bytes"] = int(torch.cuda.max_memory_allocated())
        del meshes
        conn.send(("done", stats))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the worker, which classifies it
        conn.send(("error", portable(exc)))
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def portable(exc: Exception) -> Exception:
    """`exc` if it survives pickling (so the worker classifies it as it is: disk full, out of memory), else a
    `RuntimeError` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class ExportProcess:
    """Runs exports in a child process that `run` kills on cancel; one export at a time, from one thread (the
    one that created it: on Linux the child dies with that thread)."""

    def __init__(self, device: str | None = None, converter: str | None = None) -> None:
        self.device = device
        self.converter = converter
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._lifeline = None
        self.restarts = 0

    def start(self) -> None:
        """Start the process now (it warms up in the background); `run` starts one itself when needed."""
        if self._proc is not None and self._proc.is_alive():
            return
        ours, theirs = self._ctx.Pipe()
        receiver, sender = self._ctx.Pipe(duplex=False)  # the lifeline: we only hold the write end
        self._proc = self._ctx.Process(
            target=export_main,
            name="genesis-export",
            daemon=True,
            args=(theirs, self.device, self.converter, os.getpid(), receiver),
        )
        self._proc.start()
        theirs.close()
        receiver.close()
        self._conn, self._lifeline = ours, sender

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def run(
        self, task: ExportTask, progress: ProgressFn | None, cancelled: Callable[[], bool]
    ) -> dict[str, Any]:
        """Export `task`; returns the mesh statistics. Raises `JobCancelled` within about `POLL_S` of
        `cancelled()` turning true (or of `progress` raising it), whatever the export is doing; the export's
        own exception when it fails; `ExportCrashed` when the process dies."""
        self.start()
        before = temporaries(task.destination.parent)
        try:
            self._conn.send(task)
            while True:
                if cancelled():
                    raise JobCancelled("the job was cancelled")
                answer = self._receive()
                if answer is None:
                    continue
                kind, *payload = answer
                if kind == "progress":
                    if progress is not None:
                        progress(*payload)
                elif kind == "done":
                    return payload[0]
                else:
                    failure = payload[0]
                    break
        except BaseException as exc:  # cancelled, crashed, or our side failed: the export must not go on
            self._kill()
            remove_new_temporaries(task.destination.parent, before)
            if isinstance(exc, Exception):
                self.start()  # warm for the next job
            raise
        raise failure  # the export's own failure: the process is fine and stays

    def _receive(self) -> tuple | None:
        """The next message, None when there is none yet; `ExportCrashed` when the process has gone."""
        try:
            if self._conn.poll(POLL_S):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        else:
            if self._proc.is_alive():
                return None
        self._proc.join(1.0)
        code = self._proc.exitcode
        self.restarts += 1
        raise ExportCrashed(
            f"The export process stopped unexpectedly (exit code {code}); the system may have run out of memory."
        )

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(2.0)
        for end in (self._conn, self._lifeline):
            if end is not None:
                end.close()
        self._proc = self._conn = self._lifeline = None

    def close(self) -> None:
        """Stop the process (at once: an export in flight is abandoned)."""
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(1.0)
            except OSError:
                pass
        self._kill()


def temporaries(folder: Path) -> set[str]:
    """The names of the half-written files and folders in `folder` now."""
    return {p.name for p in folder.glob(TEMPORARY_PREFIX + "*")} if folder.is_dir() else set()


def remove_new_temporaries(folder: Path, before: set[str]) -> None:
    """Remove what a killed export left in `folder` (temporaries that were not there before it began)."""
    for name in temporaries(folder) - before:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
