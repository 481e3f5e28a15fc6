"""Teacher data for every input of an images folder: resumable, failure-tracked, in a restartable child process.

`write_teacher_data` (the parent) lists the inputs (`store.find_items`), skips those already done or given
up, and hands the rest to a child process (`teacher_main`) that loads the teacher once and works through
them, telling the parent which input it starts and how it ended. An input that fails (unreadable image,
out of memory, any error of the teacher) is logged with its reason and skipped; when the child itself dies
(a crash, the kernel's out-of-memory killer), the input it was working on is logged as the cause, and a new
child goes on with the inputs left. The child ends itself when the parent is gone. A later call on the same
folder resumes: finished inputs (and finished seeds of an unfinished one) are never made again.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .settings import DEFAULT_TEACHER
from .store import (
    DONE_FILE,
    VIEWS_FILE,
    Item,
    TeacherStore,
    find_items,
    item_seeds,
    read_npz,
    write_json,
    write_npz,
)

PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher data is made. `teacher` names the callable that builds the teacher in the child,
    `module:attribute`, called as `(models_dir, pipeline_type, device)` (`teacher.Trellis2Teacher`)."""

    pipeline_type: str = "512"
    seeds_per_image: int = 2
    image_size: int = 128  # the student's input crop, stored per view
    teacher: str = DEFAULT_TEACHER
    device: str | None = None

    def pinned(self) -> dict:
        """What data made earlier must share with this run to be added to (`TeacherStore.check_settings`)."""
        return {"pipeline_type": self.pipeline_type, "image_size": self.image_size}


@dataclass
class TeacherProgress:
    """Where the teacher data stands: inputs done (`earlier` of them before this run), failed, in all."""

    done: int
    failed: int
    total: int
    earlier: int
    eta_s: float | None = None
    current: str | None = None

    def line(self) -> str:
        """`teacher [######......] 3/6 done, 1 failed, about 12 s left (chair.png)`."""
        width = 24
        filled = int(round(width * (self.done + self.failed) / max(1, self.total)))
        eta = f", about {self.eta_s:.0f} s left" if self.eta_s is not None else ""
        current = f" ({self.current})" if self.current else ""
        return (
            f"teacher [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} done, "
            f"{self.failed} failed{eta}{current}"
        )


@dataclass
class TeacherReport:
    done: int
    failed: int
    total: int
    made: int  # inputs made by this run
    restarts: int  # child processes started again after a crash
    seconds: float
    failures: list[dict] = field(default_factory=list)
    input_seconds: list[float] = field(default_factory=list)  # each input made by this run, start to done


class TeacherError(RuntimeError):
    """The teacher cannot run at all (e.g. its models are missing): nothing can be made."""


def resolve(path: str) -> Any:
    """`package.module:attribute` -> the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def failure_reason(exc: BaseException) -> str:
    """One line for the failures log: what kind of failure, in plain words, then the error."""
    text = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if name == "ImageInputError":
        return f"unusable image: {text}"
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"out of memory: {text}"
    return f"{name}: {text}"


# -- the child -------------------------------------------------------------------------------------------------
def watch_parent(parent_pid: int) -> None:
    """End this process within `PARENT_POLL_S` of its parent's death (it is then adopted by another)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="teacher-parent-watch", daemon=True).start()


def make_item(teacher: Any, store: TeacherStore, item: Item, settings: TeacherSettings) -> None:
    """Every missing seed of one input, then its `done.json`."""
    from trellis2.pipelines import open_image

    from ..pipeline import object_crop
    from .targets import teacher_record, to_bytes

    views = [teacher.cut_out(open_image(path)) for path in item.views]
    crops = torch.cat([object_crop(view, settings.image_size) for view in views])
    folder = store.item_dir(item.id)
    write_npz(
        folder / VIEWS_FILE, {"crops": to_bytes(crops), "names": np.array([p.name for p in item.views])}
    )
    stats = []
    for seed in item_seeds(item.id, settings.seeds_per_image):
        path = store.seed_file(item.id, seed)
        if path.is_file():
            stats.append(json.loads(str(read_npz(path)["stats"])))
            continue
        arrays, seed_stats = teacher_record(teacher.run(views, seed), seed)
        write_npz(path, {**arrays, "stats": np.array(json.dumps(seed_stats))})
        stats.append(seed_stats)
    write_json(
        folder / DONE_FILE,
        {"views": [p.name for p in item.views], "seeds": [s["seed"] for s in stats], "stats": stats},
    )


def teacher_main(
    models_dir: str, teacher_dir: str, items: list[Item], settings: TeacherSettings, conn, parent_pid: int
) -> None:
    """The child: build the teacher, then make every item, reporting `("start"|"done"|"failed", id, ...)`
    and `("fatal", reason)` when the teacher cannot be built."""
    watch_parent(parent_pid)
    try:
        teacher = resolve(settings.teacher)(Path(models_dir), settings.pipeline_type, settings.device)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops with it
        conn.send(("fatal", f"the teacher could not be loaded: {failure_reason(exc)}"))
        return
    store = TeacherStore(Path(teacher_dir))
    for item in items:
        conn.send(("start", item.id))
        try:
            make_item(teacher, store, item, settings)
        except Exception as exc:  # noqa: BLE001 - one input's failure never stops the run
            conn.send(("failed", item.id, failure_reason(exc)))
            free_memory()
            continue
        conn.send(("done", item.id))
    conn.close()


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the parent ------------------------------------------------------------------------------------------------
def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the teacher process was killed by signal {-code}" + (
            " (often the system running out of memory)" if code == -9 else ""
        )
    return f"the teacher process crashed (exit code {code})"


def write_teacher_data(
    images_dir: Path,
    teacher_dir: Path,
    models_dir: Path,
    settings: TeacherSettings = TeacherSettings(),
    progress: Callable[[TeacherProgress], None] | None = None,
    log: Callable[[str], None] = print,
) -> TeacherReport:
    """Make the teacher data of every input of `images_dir` in `teacher_dir` (module docstring)."""
    started = time.monotonic()
    store = TeacherStore(teacher_dir)
    items = find_items(images_dir)
    if not items:
        raise ValueError(
            f"no images in {images_dir} (PNG, JPEG, WebP, BMP or TIFF files, or folders of them)"
        )
    store.root.mkdir(parents=True, exist_ok=True)
    store.check_settings(settings.pinned())
    seeds = {item.id: item_seeds(item.id, settings.seeds_per_image) for item in items}
    done = sum(store.is_done(i.id, seeds[i.id]) for i in items)
    failed = sum(store.failed(i.id) is not None and not store.is_done(i.id, seeds[i.id]) for i in items)
    pending = [i for i in items if not store.is_done(i.id, seeds[i.id]) and store.failed(i.id) is None]
    state = TeacherProgress(done, failed, len(items), done)
    if done or failed:
        log(f"resuming: {done} input(s) done and {failed} given up earlier are skipped")
    made, restarts, durations = 0, -1, []
    by_id = {item.id: item for item in items}
    ctx = multiprocessing.get_context("spawn")
    while pending:
        restarts += 1
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=teacher_main,
            name="genesis-teacher",
            args=(str(models_dir), str(teacher_dir), pending, settings, sender, os.getpid()),
        )
        child.start()
        sender.close()
        log(f"teacher process started (pid {child.pid}) for {len(pending)} input(s)")
        current, item_started, started_any = None, time.monotonic(), False
        try:
            while True:
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                kind, *rest = message
                if kind == "fatal":
                    child.join()
                    raise TeacherError(rest[0])
                if kind == "start":
                    current, item_started, started_any = rest[0], time.monotonic(), True
                    state.current = by_id[current].label
                elif kind == "done":
                    state.done, made = state.done + 1, made + 1
                    durations.append(time.monotonic() - item_started)
                    pending = [i for i in pending if i.id != rest[0]]
                    current = None
                elif kind == "failed":
                    store.record_failure(by_id[rest[0]], rest[1])
                    log(f"skipped {by_id[rest[0]].label}: {rest[1]}")
                    state.failed += 1
                    pending = [i for i in pending if i.id != rest[0]]
                    current = None
                if durations:
                    state.eta_s = sum(durations) / len(durations) * len(pending)
                if progress is not None:
                    progress(state)
        except BaseException:
            if child.is_alive():
                child.kill()
            child.join()
            raise
        child.join()
        receiver.close()
        if current is not None:  # the child died on this input
            reason = exit_reason(child.exitcode)
            store.record_failure(by_id[current], reason)
            log(f"skipped {by_id[current].label}: {reason}")
            state.failed += 1
            pending = [i for i in pending if i.id != current]
            if progress is not None:
                progress(state)
        elif pending and not started_any:  # it cannot even load the teacher: another try would do the same
            raise TeacherError(f"{exit_reason(child.exitcode)} before it started an input")
    state.current = None
    report = TeacherReport(
        state.done, state.failed, len(items), made, max(0, restarts), time.monotonic() - started
    )
    report.input_seconds = [round(d, 3) for d in durations]
    report.failures = [
        store.failed(i.id) for i in items if store.failed(i.id) and not store.is_done(i.id, seeds[i.id])
    ]
    log(
        json.dumps(
            {"teacher": {k: v for k, v in asdict(report).items() if k not in ("failures", "input_seconds")}}
        )
    )
    return report
