"""The single GPU worker: runs queued jobs one at a time, in order, and survives every job failure."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trellis2.progress import JobCancelled

from .engines import ENGINES
from .engines.base import EngineManager, EngineRequest, free_accelerator_memory
from .errors import error_info
from .export import Converter, export_generation
from .export_process import ExportCrashed, ExportProcess, ExportTask
from .files import (
    MODEL_FILE,
    PREVIEW_FILE,
    THUMBNAIL_FILE,
    DiskReserve,
    JobFolders,
    disk_full_message,
    is_disk_full,
)
from .generation import GENERATION_FILE, save_generation
from .images import load_job_images
from .progress import ProgressSnapshot, ProgressTracker
from .refine import load_structure, save_structure
from .store import CANCELLED, FAILED, Job, JobStore
from .timings import ExpectedCurve, compact, device_label, timing_key

log = logging.getLogger("genesis.worker")
DB_PROGRESS_INTERVAL_S = 0.2
TICK_S = 0.5  # how often the progress of a job with a history moves on between the engine's reports
CANCEL_POLL_S = 0.1
FINAL_WRITE_ATTEMPTS = 6  # tries to record a job's end (about 3 s in all) before leaving it to the restart


class JobFailure(Exception):
    """A failure with a code and a message meant for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
    )


def classify_failure(exc: BaseException, data_dir: Path | None = None) -> JobFailure:
    """Map an engine exception to what the user sees (never a stack trace)."""
    if isinstance(exc, JobFailure):
        return exc
    if isinstance(exc, ExportCrashed):
        return JobFailure("worker_crashed", str(exc))
    if is_disk_full(exc):
        return JobFailure("disk_full", disk_full_message(exc, data_dir or Path("."), "the job"))
    if is_out_of_memory(exc):
        return JobFailure("out_of_memory", error_info("out_of_memory").message)
    kind = type(exc).__name__
    if kind == "ModelNotFoundError":
        return JobFailure("model_missing", str(exc))
    if kind == "ImageInputError":
        return JobFailure("invalid_image", str(exc))
    return JobFailure("engine_error", f"The engine failed: {kind}: {exc}"[:2000])


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes() -> int | None:
    """Peak accelerator memory of this job (CUDA only), for the result's statistics."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def mesh_bytes(meshes: list) -> int:
    """The bytes of the meshes' tensors: about what their stored generation takes (an upper bound)."""
    names = ("vertices", "faces", "coords", "attrs", "origin")
    return sum(getattr(m, n).numel() * 4 for m in meshes for n in names if hasattr(m, n))


class CancelFlag:
    """Set here (in-process cancel) or through the store's `cancel_requested` (from the server process),
    which is read at most every `CANCEL_POLL_S`. When the parent process is gone, it exits at once."""

    def __init__(
        self, store: JobStore | None = None, job_id: str = "", parent_pid: int | None = None
    ) -> None:
        self._event = threading.Event()
        self._store = store
        self._job_id = job_id
        self._parent_pid = parent_pid
        self._checked = 0.0

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        if self._event.is_set():
            return True
        now = time.monotonic()
        if self._store is not None and now - self._checked >= CANCEL_POLL_S:
            self._checked = now
            exit_if_orphaned(self._parent_pid)
            if self._store.cancel_requested(self._job_id):
                self._event.set()
        return self._event.is_set()


def exit_if_orphaned(parent_pid: int | None) -> None:
    """A worker process whose server died stops at once; the next server marks its job interrupted."""
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)


def input_count(job: Job) -> int:
    """How many input images the job has (its preview is not one)."""
    return sum(1 for name in job.inputs if name != PREVIEW_FILE)


class JobProgress:
    """One running job's progress: each report goes through the tracker to the live view, the store (at most
    every `DB_PROGRESS_INTERVAL_S`) and `on_progress`; with a history, a ticker publishes between reports too,
    so the bar and the time left move through long steps (a UV unwrap, a bake). Raises `JobCancelled` on a
    report once the job's cancel flag is set."""

    def __init__(
        self,
        worker: JobWorker,
        job_id: str,
        tracker: ProgressTracker,
        flag: CancelFlag,
        on_progress: Callable[[ProgressSnapshot], None] | None = None,
    ) -> None:
        self.worker, self.job_id, self.tracker, self.flag = worker, job_id, tracker, flag
        self.on_progress = on_progress
        self._last_write = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, stage: str, step: int, total: int) -> None:
        if self.flag.is_set():
            raise JobCancelled("the job was cancelled")
        self.publish(self.tracker.update(stage, step, total))

    def publish(self, snap: ProgressSnapshot) -> None:
        with self._lock:
            self.worker.live[self.job_id] = snap
            now = time.monotonic()
            if now - self._last_write >= DB_PROGRESS_INTERVAL_S:
                self._last_write = now
                self.worker.store.update_progress(
                    self.job_id, snap.stage, snap.step, snap.total, snap.fraction, snap.eta_s, snap.eta_basis
                )
            if self.on_progress is not None:
                self.on_progress(snap)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.publish(self.tracker.current())
            except Exception:  # noqa: BLE001 - e.g. a full disk for a moment: the next report tries again
                log.debug("progress tick failed", exc_info=True)

    def __enter__(self) -> JobProgress:
        if self.tracker.expected is not None:
            self._ticker = threading.Thread(target=self._tick, name="genesis-progress-tick", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()


class JobWorker:
    """Owns the only thread that touches the accelerator. The database is the queue, so a restart
    resumes queued jobs; `live` holds the running job's fresh progress for the API."""

    def __init__(
        self,
        store: JobStore,
        folders: JobFolders,
        engines: EngineManager,
        poll_s: float = 0.5,
        device: str | None = None,
        converter: Converter | None = None,
        wake=None,
        stop=None,
        parent_pid: int | None = None,
        exporter: ExportProcess | None = None,
    ) -> None:
        self.store = store
        self.folders = folders
        self.engines = engines
        self.poll_s = poll_s
        self.device = device
        self.converter = converter
        # None: export in this process (a cancel then waits for the export's next progress call)
        self.exporter = exporter
        self.live: dict[str, ProgressSnapshot] = {}
        self.current: str | None = None
        self._cancel: dict[str, CancelFlag] = {}
        self._wake = wake if wake is not None else threading.Event()
        self._stop = stop if stop is not None else threading.Event()
        self.parent_pid = parent_pid
        self.reserve = DiskReserve(store.data_dir)
        self._device_name: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def device_name(self) -> str:
        """The accelerator this worker's jobs run on, by name (timings are learned per device)."""
        if self._device_name is None:
            self._device_name = device_label(self.device)
        return self._device_name

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="genesis-gpu-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            for flag in self._cancel.values():
                flag.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """A job was queued: wake the worker now instead of at the next poll."""
        self._wake.set()

    def run_forever(self) -> None:
        """The worker loop in the calling thread (the worker process's main thread)."""
        self._loop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            exit_if_orphaned(self.parent_pid)
            try:
                job = self.store.next_queued()
                if job is not None:
                    self.run_job(job)
                    continue
                if self.engines.unload_idle():
                    log.info("engines unloaded after %.0f s idle", self.engines.idle_unload_s)
            except Exception:  # noqa: BLE001 - the worker must never die
                log.exception("worker loop error")
                time.sleep(self.poll_s)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- cancel ----------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job now, or ask the running one to stop at its next step."""
        if self.store.cancel_queued(job_id):
            return True
        requested = self.store.request_cancel(job_id)
        with self._lock:
            flag = self._cancel.get(job_id)
        if flag is not None:
            flag.set()
        return requested or flag is not None

    # -- one job ---------------------------------------------------------------------------------------
    def run_job(self, job: Job, on_progress: Callable[[ProgressSnapshot], None] | None = None) -> Job:
        """Run one queued job to its final state; every outcome is recorded in the store."""
        self.reserve.ensure()
        if not self.store.start(job.id):
            return self.store.get(job.id) or job
        flag = CancelFlag(self.store, job.id, self.parent_pid)
        with self._lock:
            self._cancel[job.id] = flag
            self.current = job.id
        engine_name = job.engine
        try:
            engine = self.engines.engines.get(engine_name)
            if engine is None:
                raise JobFailure("engine_not_installed", f"There is no engine called {engine_name!r}.")
            params = ENGINES[engine_name].params.model_validate(job.params)
            plan = engine.stage_plan(params)
            kind = timing_key(engine_name, self.device_name, plan, params, input_count(job))
            tracker = ProgressTracker(plan, ExpectedCurve.from_timelines(self.store.timelines(kind)))
            with JobProgress(self, job.id, tracker, flag, on_progress) as progress:
                self._execute(job, engine_name, params, progress, flag)
            self.remember_timeline(kind, tracker)
        except JobCancelled:
            self.record_final(job.id, CANCELLED, "cancelled", error_info("cancelled").message)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed job
            failure = classify_failure(exc, self.store.data_dir)
            if failure.code == "out_of_memory":
                self.engines.unload_all()
            if failure.code == "engine_error":
                log.exception("job %s failed", job.id)
            else:
                log.warning("job %s failed: %s", job.id, failure.message)
            self.record_final(job.id, FAILED, failure.code, failure.message)
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._lock:
                self._cancel.pop(job.id, None)
                self.current = None
            self.live.pop(job.id, None)
            self.engines.touch()
            free_accelerator_memory()
        return self.store.get(job.id) or job

    def remember_timeline(self, kind: str, tracker: ProgressTracker) -> None:
        """Keep the finished job's timeline for the next job of its kind (a failure here costs only that)."""
        try:
            self.store.add_timeline(kind, compact(tracker.finish()))
        except sqlite3.Error as exc:
            log.warning("could not keep the job's timings: %s", exc)

    def record_final(self, job_id: str, state: str, code: str, message: str) -> None:
        """Record how the job ended, also on a full disk (the reserve file is given up for it): a job
        never stays `running` because its failure could not be written."""
        for attempt in range(FINAL_WRITE_ATTEMPTS):
            try:
                self.store.finish(job_id, state, code, message)
                return
            except sqlite3.Error as exc:
                released = is_disk_full(exc) and self.reserve.release()
                log.warning(
                    "could not record the end of job %s (%s)%s", job_id, exc, "; reserve freed" * released
                )
                time.sleep(0.05 * 2**attempt)
        log.error("gave up recording the end of job %s; the next start marks it interrupted", job_id)

    def _execute(self, job: Job, engine_name: str, params: Any, progress, flag: CancelFlag) -> None:
        started = time.monotonic()
        reset_peak_memory()
        progress("loading", 0, 1)
        images = load_job_images(self.folders, job)
        engine = self.engines.acquire(engine_name)
        progress("loading", 1, 1)
        structure = load_structure(self.folders, job.id)  # a refine job's copy of its draft's
        request = EngineRequest(
            images=images, params=params, extra={"structure": structure} if structure is not None else {}
        )
        meshes = engine.run(request, progress, flag)
        if not meshes:
            raise JobFailure("engine_error", "The engine produced no model for this image.")
        progress("saving", 0, 1)
        size = mesh_bytes(meshes)
        with self.folders.atomic(job.id, GENERATION_FILE, size, "saving the generation") as tmp:
            save_generation(meshes, tmp)
        if structure is None and request.extra.get("structure") is not None:  # a new draft's, for Refine
            save_structure(self.folders, job.id, request.extra["structure"])
        progress("saving", 1, 1)
        glb = size + 2 * params.texture_size**2  # the geometry and its (compressed) texture maps
        export_progress = lambda stage, step, total: progress(f"export:{stage}", step, total)  # noqa: E731
        thumbnail = self.folders.path(job.id, THUMBNAIL_FILE)
        with self.folders.atomic(job.id, MODEL_FILE, glb, "writing the model") as tmp:
            if self.exporter is not None:
                del meshes  # the export process reads the saved generation
                free_accelerator_memory()
                task = ExportTask(
                    self.folders.path(job.id, GENERATION_FILE), params.export_params(), "glb", tmp, thumbnail
                )
                stats = self.exporter.run(task, export_progress, flag.is_set)
            else:
                stats = export_generation(
                    meshes, params.export_params(), "glb", tmp, export_progress, self.converter, thumbnail
                )
        stats["file_bytes"] = self.folders.path(job.id, MODEL_FILE).stat().st_size
        stats["seconds"] = round(time.monotonic() - started, 2)
        stats["texture_size"] = params.texture_size
        peak = max(filter(None, (peak_memory_bytes(), stats.pop("peak_vram_bytes", None))), default=None)
        if peak is not None:
            stats["peak_vram_bytes"] = peak
        progress("export", 1, 1)
        if flag.is_set():
            raise JobCancelled("the job was cancelled")
        pictured = {THUMBNAIL_FILE: THUMBNAIL_FILE} if thumbnail.is_file() else {}
        self.store.succeed(job.id, {MODEL_FILE: MODEL_FILE, **pictured}, stats)
