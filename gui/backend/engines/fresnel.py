"""Fresnel, the fast distilled engine. It has no implementation in this build, and says so."""

from __future__ import annotations

from .base import Engine, EngineRequest, EngineStatus

NOT_INSTALLED = ("Fresnel is not available in this build of Genesis yet: no implementation or weights are "
                 "installed. Use the TRELLIS.2 engine (POST /api/generate/image) instead.")


class FresnelEngine(Engine):
    name = "fresnel"

    def status(self) -> EngineStatus:
        return EngineStatus(False, NOT_INSTALLED)

    @property
    def loaded(self) -> bool:
        return False

    def load(self) -> None:
        raise RuntimeError(NOT_INSTALLED)

    def unload(self) -> None:
        pass

    def run(self, request: EngineRequest, progress, cancel):
        raise RuntimeError(NOT_INSTALLED)
