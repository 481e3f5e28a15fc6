"""Fresnel, the built-in fast engine: `fresnel.pipeline.FresnelPipeline` behind the engine interface.

Its bundled checkpoint ships with the code, so it is ready on a fresh install with an empty models folder.
Opaque images use the installed background-removal model when there is one, else Fresnel's own
plain-background segmentation.

Models: the bundled one (the default) and the students distilled from TRELLIS.2 in `<models>/fresnel/<name>/`
(`genesis fresnel distill`); a job picks one by name (`FastParams.fresnel_model`), whose choices are the
models of the newest Fresnel engine alive in this process (`model_names`, read when a request is validated;
a server or a command makes its engines once).
"""

from __future__ import annotations

import weakref
from typing import Any

from .base import Engine, EngineRequest, EngineStatus, free_accelerator_memory
from .trellis2 import background_in_use

STAGE_PLAN = [
    ("loading", 0.5),
    ("preprocess", 0.5),
    ("network", 0.5),
    ("surface", 0.5),
    ("saving", 0.2),
    ("export", 6.0),
]


_ENGINES: list[weakref.ref] = []  # the Fresnel engines made in this process, oldest first


def model_names() -> tuple[str, ...]:
    """The models the newest Fresnel engine can run: the built-in one first, then the distilled ones."""
    from fresnel.checkpoint import model_folders

    alive = [engine for engine in (ref() for ref in _ENGINES) if engine is not None]
    return tuple(model_folders(alive[-1].models_dir if alive else None))


class FresnelEngine(Engine):
    name = "fresnel"
    label = "Fresnel"

    def __init__(self, models_dir, device: str | None = None) -> None:
        super().__init__(models_dir, device)
        self._pipeline = None
        self._model: str | None = None
        self._remover = None
        _ENGINES[:] = [ref for ref in _ENGINES if ref() is not None] + [weakref.ref(self)]

    def status(self) -> EngineStatus:
        from fresnel.checkpoint import BUNDLED_DIR
        from fresnel.config import CONFIG_FILE, WEIGHTS_FILE

        if not (BUNDLED_DIR / CONFIG_FILE).is_file() or not (BUNDLED_DIR / WEIGHTS_FILE).is_file():
            return EngineStatus(False, f"The bundled Fresnel checkpoint is missing from {BUNDLED_DIR}.")
        return EngineStatus(True, "")

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def load(self, model: str | None = None) -> None:
        """Load `model` (default: the built-in one) unless it is the one loaded."""
        from fresnel.checkpoint import BUILTIN_MODEL, MODELS_SUBDIR, model_folders

        model = model or BUILTIN_MODEL
        if self._pipeline is not None and self._model == model:
            return
        folder = model_folders(self.models_dir).get(model)
        if folder is None:
            from trellis2.pipelines import ModelNotFoundError

            raise ModelNotFoundError(
                f"{MODELS_SUBDIR}/{model}",
                self.models_dir,
                hint="Fresnel models are made with `genesis fresnel distill`.",
            )
        from fresnel.pipeline import FresnelPipeline

        self.unload()  # the other model goes before this one loads
        self._pipeline, self._model = FresnelPipeline.from_checkpoint(folder, device=self.device), model

    def unload(self) -> None:
        self._pipeline = None
        self._model = None
        self._remover = None
        free_accelerator_memory()

    def stage_plan(self, params: Any) -> list[tuple[str, float]]:
        return STAGE_PLAN

    def _background_remover(self):
        """The background-removal model in use (`trellis2.background_in_use`: the chosen or installed one), or
        None (Fresnel then segments plain backgrounds)."""
        from trellis2.pipelines.model_paths import find_repository

        if self._remover is None:
            model = background_in_use(self.models_dir)
            folder = find_repository(self.models_dir, model) if model else None
            if folder is None or not (folder / "model.safetensors").is_file():
                return None
            from trellis2.pipelines.background_removal import BiRefNet

            self._remover = BiRefNet(folder)
        return self._remover

    def run(self, request: EngineRequest, progress, cancel):
        self.load(request.params.fresnel_model)
        assets, structure = self._pipeline.run_draft(
            request.images[0],
            seed=request.params.seed,
            progress=progress,
            cancel=cancel,
            remove_background=self._background_remover(),
        )
        request.extra["structure"] = structure  # kept with the job: Refine starts TRELLIS.2 from it
        return assets
