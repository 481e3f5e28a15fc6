"""The engine registry: one entry per engine, and the only place that lists them.

A new engine is one module in this folder (a subclass of `Engine`: status, load/unload, `run`, `stage_plan`)
plus one `EngineEntry` below: its name, the label people read, its params class (`params.py`), the route
`POST /api/generate/<route>` and how many images it takes. The server's routes, the worker, the CLI's
`--engine` choices and the renderer's mode tabs (through `GET /api/config`) all follow this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..params import ExportParams, FastParams, GenerateParams, MultiViewParams
from .base import Engine, EngineManager, EngineRequest, EngineStatus
from .fresnel import FresnelEngine
from .multiview import MultiViewEngine
from .trellis2 import Trellis2Engine

__all__ = [
    "ENGINES",
    "Engine",
    "EngineEntry",
    "EngineManager",
    "EngineRequest",
    "EngineStatus",
    "default_engines",
]


@dataclass(frozen=True)
class EngineEntry:
    """How the service offers one engine."""

    name: str  # the job's `engine`, the key of `/api/health` engines
    label: str  # what people read (mode tabs, job list)
    description: str
    engine_class: type[Engine]  # built as `engine_class(models_dir, device)`; its `stage_plan` drives the ETA
    params: type[ExportParams]  # the `params` of the generate request
    route: str  # POST /api/generate/<route>
    image_field: str = "image"  # the multipart file field
    min_images: int = 1
    max_images: int = 1


ENGINES: dict[str, EngineEntry] = {
    entry.name: entry
    for entry in (
        EngineEntry(
            "trellis2",
            "Image",
            "TRELLIS.2: one picture to a textured 3D model",
            Trellis2Engine,
            GenerateParams,
            route="image",
        ),
        EngineEntry(
            "multiview",
            "Multi-view",
            "TRELLIS.2 conditioned on several views of one object",
            MultiViewEngine,
            MultiViewParams,
            route="multiview",
            image_field="images",
            min_images=2,
            max_images=8,
        ),
        EngineEntry(
            "fresnel",
            "Fast",
            "Fresnel: a fast distilled one-step model",
            FresnelEngine,
            FastParams,
            route="fast",
        ),
    )
}


def default_engines(models_dir: Path, device: str | None = None) -> dict[str, Engine]:
    return {name: entry.engine_class(models_dir, device) for name, entry in ENGINES.items()}


def short_reason(reason: str) -> str:
    """The first words of a status reason ("Models missing in /x: ..." -> "Models missing")."""
    return re.split(r"[:.(]| in ", reason or "not ready")[0].strip() or "not ready"


def engine_summary(statuses: dict[str, EngineStatus], device: str) -> str:
    """One line saying which engines can run, e.g. "Image: Models missing · Fast ready · CPU (slow)": the
    header of the app and the terminal of `start` show the same."""
    parts = [
        f"{entry.label} ready"
        if statuses[name].ready
        else f"{entry.label}: {short_reason(statuses[name].reason)}"
        for name, entry in ENGINES.items()
        if name in statuses
    ]
    parts.append("CPU (slow)" if device == "cpu" else device)
    return " · ".join(parts)
