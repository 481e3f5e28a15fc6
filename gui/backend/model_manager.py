"""The server's download manager: models are fetched one at a time by a background thread, each download a
task that goes `queued → downloading → verifying → done`, or ends `failed` (with a one-line error) or
`cancelled`. A task reports bytes done and in all, the speed over the last seconds and the time left.

The fetching itself (resume, checksums, error messages) is `models_download.fetch_model`; what the API serves
(`snapshot`) joins each model's state on disk with its latest task, the token's status and the background
model in use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import models_download as md
from .files import free_bytes
from .hf_token import TokenStore

log = logging.getLogger("genesis.models")

QUEUED, DOWNLOADING, VERIFYING, DONE, FAILED, CANCELLED = (
    "queued",
    "downloading",
    "verifying",
    "done",
    "failed",
    "cancelled",
)
ACTIVE = (QUEUED, DOWNLOADING, VERIFYING)
SPEED_WINDOW_S = 5.0  # the speed is measured over this many seconds


@dataclass
class DownloadTask:
    """One model's download, as the panel shows it."""

    repo_id: str
    state: str = QUEUED
    done_bytes: int = 0
    total_bytes: int | None = None
    speed_bps: float | None = None
    eta_s: float | None = None
    error_code: str | None = None
    error: str | None = None
    queued_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    samples: deque = field(default_factory=lambda: deque(maxlen=256), repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def record(self, phase: str, done: int, total: int, now: float | None = None) -> None:
        """A progress report of `fetch_model`: bytes, then speed and time left over `SPEED_WINDOW_S`."""
        now = time.monotonic() if now is None else now
        state = VERIFYING if phase == "verifying" else DOWNLOADING
        if state != self.state:
            self.samples.clear()  # hashing speed is not download speed
        self.state, self.done_bytes, self.total_bytes = state, done, total
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > SPEED_WINDOW_S:
            self.samples.popleft()
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if t1 - t0 >= 0.5 and d1 >= d0:
            self.speed_bps = (d1 - d0) / (t1 - t0)
            self.eta_s = (total - done) / self.speed_bps if self.speed_bps > 0 else None
        elif t1 - t0 >= 0.5:
            self.speed_bps = self.eta_s = None

    def to_api(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "state": self.state,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "speed_bps": self.speed_bps,
            "eta_s": self.eta_s,
            "error_code": self.error_code,
            "error": self.error,
            "queued_at": self.queued_at,
            "finished_at": self.finished_at,
        }


Fetch = Callable[..., None]  # models_download.fetch_model's signature


class ModelManager:
    """Queue, run and cancel model downloads into `models_dir`, one at a time, on a thread of its own."""

    def __init__(
        self, models_dir: Path, tokens: TokenStore, endpoint: str | None = None, fetch: Fetch | None = None
    ) -> None:
        self.models_dir = Path(models_dir)
        self.tokens = tokens
        self.endpoint = endpoint
        self.fetch = fetch or md.fetch_model
        self._lock = threading.Condition()
        self._queue: deque[DownloadTask] = deque()
        self._tasks: dict[str, DownloadTask] = {}  # the latest task of each model
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- commands -------------------------------------------------------------------------------------------
    def download(self, repo_ids: list[str]) -> list[str]:
        """Queue these models (KeyError for an unknown one); a model already queued or running is left as is.
        Returns the ids queued now."""
        specs = [md.find_spec(r) for r in repo_ids]
        queued = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the download manager is closed")
            for spec in specs:
                current = self._tasks.get(spec.repo_id)
                if current is not None and current.active:
                    continue
                task = DownloadTask(spec.repo_id)
                self._tasks[spec.repo_id] = task
                self._queue.append(task)
                queued.append(spec.repo_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="genesis-model-downloads", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return queued

    def download_all(self) -> list[str]:
        """Queue every model of `download_set` that is not verified yet."""
        found = md.presence(self.models_dir)
        wanted = [
            s.repo_id
            for s in md.download_set(self.models_dir)
            if md.model_state(self.models_dir, s, found) != md.VERIFIED
        ]
        return self.download(wanted)

    def cancel(self, repo_id: str | None = None) -> list[str]:
        """Cancel the download of `repo_id` (every active one for None): a queued one at once, the running one
        within a chunk. What was fetched stays for the next download to continue."""
        cancelled = []
        with self._lock:
            for task in list(self._tasks.values()):
                if not task.active or (repo_id is not None and task.repo_id != repo_id):
                    continue
                task.cancel.set()
                cancelled.append(task.repo_id)
                if task.state == QUEUED:
                    self._queue.remove(task)
                    self._finish(task, CANCELLED)
        return cancelled

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the thread."""
        with self._lock:
            self._closed = True
        self.cancel()
        with self._lock:
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- state ------------------------------------------------------------------------------------------------
    def task(self, repo_id: str) -> DownloadTask | None:
        with self._lock:
            return self._tasks.get(repo_id)

    def snapshot(self) -> dict[str, Any]:
        """Every model (state on disk, size, licence, gated, latest task), the token's status, the background
        model in use and the free space: what `GET /api/models` sends."""
        found = md.presence(self.models_dir)
        in_use = md.background_model(self.models_dir)
        with self._lock:
            tasks = {repo: task.to_api() for repo, task in self._tasks.items()}
        models = []
        for spec in md.model_specs():
            size, exact, on_disk = md.local_size(self.models_dir, spec)
            models.append(
                {
                    "id": spec.repo_id,
                    "purpose": spec.purpose,
                    "licence": spec.licence,
                    "gated": spec.gated,
                    "page": md.model_page(spec.repo_id, self.endpoint),
                    "size_bytes": size,
                    "size_exact": exact,
                    "bytes_on_disk": on_disk,
                    "state": md.model_state(self.models_dir, spec, found),
                    "background": spec.background,
                    "in_use": spec.repo_id == in_use if spec.background else None,
                    "task": tasks.get(spec.repo_id),
                }
            )
        active = next((t["repo_id"] for t in tasks.values() if t["state"] in (DOWNLOADING, VERIFYING)), None)
        return {
            "folder": str(self.models_dir),
            "free_bytes": free_bytes(self.models_dir),
            "models": models,
            "active": active,
            "token": self.tokens.status(),
            "tokens_page": md.tokens_page(self.endpoint),
            "background": {
                "in_use": in_use,
                "chosen": md.chosen_background(self.models_dir),
                "choices": list(md.background_models()),
            },
        }

    # -- the thread ---------------------------------------------------------------------------------------------
    def _finish(
        self, task: DownloadTask, state: str, code: str | None = None, error: str | None = None
    ) -> None:
        task.state, task.error_code, task.error = state, code, error
        task.speed_bps = task.eta_s = None
        task.finished_at = time.time()

    def _next(self) -> DownloadTask | None:
        with self._lock:
            while not self._queue and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            task = self._queue.popleft()
            task.state = DOWNLOADING  # under the lock: a cancel now goes through the task's event
            return task

    def _run(self) -> None:
        while (task := self._next()) is not None:
            self._run_task(task)

    def _run_task(self, task: DownloadTask) -> None:
        spec = md.find_spec(task.repo_id)
        token = self.tokens.resolve()

        def progress(phase: str, done: int, total: int) -> None:
            with self._lock:
                task.record(phase, done, total)

        try:
            self.fetch(
                spec,
                md.local_folder(self.models_dir, spec.repo_id),
                token,
                endpoint=self.endpoint,
                cancel=task.cancel,
                progress=progress,
            )
        except md.Cancelled:
            with self._lock:
                self._finish(task, CANCELLED)
            log.info("download of %s cancelled", spec.repo_id)
        except md.DownloadError as exc:
            message = md.redact(exc.message, token)
            with self._lock:
                self._finish(task, FAILED, exc.code, message)
            log.warning("download of %s failed: %s", spec.repo_id, message)
        except Exception as exc:  # a bug: the task still ends, the thread keeps serving the queue
            message = md.redact(
                f"Downloading {spec.repo_id} failed unexpectedly ({type(exc).__name__}).", token
            )
            with self._lock:
                self._finish(task, FAILED, "download_failed", message)
            log.error("download of %s failed unexpectedly: %s", spec.repo_id, type(exc).__name__)
        else:
            with self._lock:
                self._finish(task, DONE)
            log.info("downloaded and verified %s", spec.repo_id)
