"""How the server sees an engine: status, lazy load/unload, and `run(request, progress, cancel)`."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from o_voxel.asset import MeshWithVoxel
    from trellis2.progress import CancelFlag, ProgressCallback


@dataclass
class EngineStatus:
    ready: bool
    reason: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"ready": self.ready, "reason": self.reason}


@dataclass
class EngineRequest:
    """What a job hands its engine: decoded input images and the validated parameters."""

    images: list[Image.Image]
    params: Any
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """One way of turning images into `MeshWithVoxel`s. Subclasses load their models lazily."""

    name: str = ""

    def __init__(self, models_dir: Path, device: str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.device = device

    @abstractmethod
    def status(self) -> EngineStatus:
        """Whether jobs can run (code present, models on disk), and if not, why in plain words."""

    @property
    @abstractmethod
    def loaded(self) -> bool: ...

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def unload(self) -> None:
        """Drop every model reference and free accelerator memory."""

    @abstractmethod
    def run(
        self, request: EngineRequest, progress: ProgressCallback, cancel: CancelFlag
    ) -> list[MeshWithVoxel]: ...

    def stage_plan(self, params: Any) -> list[tuple[str, float]]:
        """Expected stages and their relative cost, for the overall fraction and the ETA."""
        return []

    def sampler_defaults(self) -> dict[str, dict[str, Any]]:
        """`{<stage>_sampler_params: {steps, ...}}`: what unset sampler values mean for this engine's models
        (read from its models folder without loading anything); empty when it has none or cannot tell."""
        return {}


def free_accelerator_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort clean-up
        pass


class EngineManager:
    """Keeps at most one engine loaded: the first job loads it, another engine's job swaps it,
    and `unload_idle` drops it after `idle_unload_s` without work."""

    def __init__(self, engines: dict[str, Engine], idle_unload_s: float = 600.0) -> None:
        self.engines = engines
        self.idle_unload_s = idle_unload_s
        self._lock = threading.RLock()
        self._last_used = time.monotonic()
        self._active: str | None = None
        self.on_change: Callable[[str | None], None] | None = None  # told which engine is loaded

    def _set_active(self, name: str | None) -> None:
        self._active = name
        if self.on_change is not None:
            self.on_change(name)

    def statuses(self) -> dict[str, EngineStatus]:
        out = {}
        for name, engine in self.engines.items():
            try:
                out[name] = engine.status()
            except Exception as exc:  # noqa: BLE001 - a broken engine must not break /health
                out[name] = EngineStatus(False, f"status check failed: {exc}")
        return out

    @property
    def active(self) -> str | None:
        return self._active

    def acquire(self, name: str) -> Engine:
        with self._lock:
            engine = self.engines[name]
            for other_name, other in self.engines.items():
                if other_name != name and other.loaded:
                    other.unload()
            if not engine.loaded:
                engine.load()
            self._set_active(name)
            self._last_used = time.monotonic()
            return engine

    def touch(self) -> None:
        self._last_used = time.monotonic()

    def unload_all(self) -> None:
        with self._lock:
            for engine in self.engines.values():
                if engine.loaded:
                    engine.unload()
            self._set_active(None)
        free_accelerator_memory()

    def unload_idle(self) -> bool:
        """Unload when nothing ran for `idle_unload_s`; True when something was unloaded."""
        with self._lock:
            if self._active is None or time.monotonic() - self._last_used < self.idle_unload_s:
                return False
            self.unload_all()
            return True
