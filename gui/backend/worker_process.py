"""The GPU worker in its own process: the web server stays responsive while a job computes, and an engine
that crashes the process fails only its job. A watchdog restarts the process; the database is the queue."""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .engines.base import Engine, EngineManager
from .export import Converter
from .export_process import ExportProcess
from .process_lifetime import die_with_parent
from .store import JobStore

log = logging.getLogger("genesis.worker")
WATCHDOG_INTERVAL_S = 0.5
FLAG_POLL_S = 0.02


def resolve(path: str) -> Any:
    """`package.module:attribute` → the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class SharedFlag:
    """A cross-process flag in shared memory without locks: unlike `multiprocessing.Event`, it cannot
    deadlock when the other process dies while waiting (as on Ctrl+C or SIGTERM to the process group)."""

    def __init__(self, ctx) -> None:
        self._value = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._value.value and time.monotonic() < deadline:
            time.sleep(FLAG_POLL_S)
        return bool(self._value.value)


@dataclass
class EngineSpec:
    """A picklable recipe for the engines (built again in the worker process) and the mesh converter."""

    factory: str = "gui.backend.engines:default_engines"
    kwargs: dict[str, Any] = field(default_factory=dict)
    converter: str | None = None

    def build(self, settings: Settings) -> dict[str, Engine]:
        return resolve(self.factory)(settings.models_dir, settings.device, **self.kwargs)

    def build_converter(self) -> Converter | None:
        return resolve(self.converter) if self.converter else None


def worker_main(
    settings: Settings, spec: EngineSpec, wake, stop, loaded, parent_pid: int, lifeline=None
) -> None:
    """Entry point of the worker process."""
    from .files import JobFolders
    from .worker import JobWorker

    if lifeline is not None:
        die_with_parent(parent_pid, lifeline)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the server stops us
    manager = EngineManager(spec.build(settings), settings.idle_unload_s)

    def publish(name: str | None) -> None:
        loaded.value = (name or "").encode()[:63]

    manager.on_change = publish
    store = JobStore(settings.data_dir)
    exporter = ExportProcess(settings.device, spec.converter)
    exporter.start()  # warms up while the first job's engine loads
    worker = JobWorker(
        store,
        JobFolders(settings.data_dir),
        manager,
        poll_s=0.5,
        device=settings.device,
        converter=spec.build_converter(),
        wake=wake,
        stop=stop,
        parent_pid=parent_pid,
        exporter=exporter,
    )
    try:
        worker.run_forever()
    finally:
        exporter.close()
        manager.unload_all()
        store.close()


class WorkerProcess:
    """Starts, watches and stops the worker process; `notify` and `cancel` reach it through the store."""

    def __init__(self, settings: Settings, spec: EngineSpec, store: JobStore) -> None:
        self.settings = settings
        self.spec = spec
        self.store = store
        self._ctx = multiprocessing.get_context("spawn")
        self._wake = SharedFlag(self._ctx)
        self._stop = SharedFlag(self._ctx)
        self._loaded = self._ctx.RawArray("c", 64)
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._lifeline = None  # the write end of the worker's pipe: closed (by us or by our death) ends it
        self.restarts = 0

    def _spawn(self) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)  # the server never writes: it only holds `sender`
        self._proc = self._ctx.Process(
            target=worker_main,
            name="genesis-worker",
            daemon=False,  # it starts the export process; `stop` (also at exit) ends it
            args=(self.settings, self.spec, self._wake, self._stop, self._loaded, os.getpid(), receiver),
        )
        self._proc.start()
        receiver.close()
        if self._lifeline is not None:
            self._lifeline.close()
        self._lifeline = sender

    def start(self) -> None:
        atexit.register(self.stop)  # before multiprocessing's own exit handler joins the process
        self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="genesis-worker-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        # lives until `stop` has finished: a worker it restarted dies with it (PR_SET_PDEATHSIG is tied
        # to the thread that started the process)
        while not self._stopped.wait(WATCHDOG_INTERVAL_S):
            if self._proc is not None and not self._proc.is_alive() and not self._closing.is_set():
                code = self._proc.exitcode
                try:
                    failed = self.store.recover_after_crash("worker_crashed")
                except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the restart still happens
                    failed = f"not recorded ({exc})"
                log.error("the worker process exited (code %s); failed job(s): %s; restarting", code, failed)
                self._loaded.value = b""
                self.restarts += 1
                self._spawn()

    def notify(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        if self.store.cancel_queued(job_id):
            return True
        return self.store.request_cancel(job_id)

    @property
    def loaded_engine(self) -> str | None:
        return self._loaded.value.decode() or None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop between jobs if possible; a running job is ended and marked interrupted."""
        if self._stopped.is_set():
            return
        atexit.unregister(self.stop)
        self._closing.set()
        self._stop.set()
        self._wake.set()
        try:
            if self._proc is None:
                return
            self._proc.join(0.5 if self.store.running_job_id() else timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout)
            self.store.recover_after_crash()
        finally:
            if self._lifeline is not None:
                self._lifeline.close()
                self._lifeline = None
            self._stopped.set()
