"""Engine adapters (one module per engine) and the registry the server starts with."""

from __future__ import annotations

from pathlib import Path

from .base import Engine, EngineManager, EngineRequest, EngineStatus
from .fresnel import FresnelEngine
from .multiview import MultiViewEngine
from .trellis2 import Trellis2Engine

__all__ = ["Engine", "EngineManager", "EngineRequest", "EngineStatus", "default_engines"]


def default_engines(models_dir: Path, device: str | None = None) -> dict[str, Engine]:
    return {
        "trellis2": Trellis2Engine(models_dir, device),
        "multiview": MultiViewEngine(models_dir, device),
        "fresnel": FresnelEngine(models_dir, device),
    }
