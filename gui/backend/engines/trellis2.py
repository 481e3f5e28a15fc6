"""The TRELLIS.2 image-to-3D engine: `trellis2.pipelines.Trellis2ImageTo3DPipeline` behind the engine interface."""

from __future__ import annotations

import time
from typing import Any

from ..errors import DOWNLOAD_COMMAND
from .base import Engine, EngineRequest, EngineStatus, free_accelerator_memory

DOWNLOAD_HINT = f"Run `{DOWNLOAD_COMMAND}` to fetch them."
BACKGROUND_MODEL = "briaai/RMBG-2.0"
STATUS_TTL_S = 5.0
SAMPLER_STAGES = ("sparse_structure_sampler", "shape_slat_sampler", "tex_slat_sampler")


def model_check(models_dir) -> list[tuple[str, bool, str]]:
    """`[(model id, present, reason)]` from the pipeline package's own check (ImportError without it)."""
    from trellis2.pipelines import check_models

    return [tuple(entry) for entry in check_models(models_dir)]


def background_in_use(models_dir) -> str | None:
    """The background-removal model jobs use (the one chosen in the Models panel, else an installed one;
    `models_download.background_model`), or None when none is installed."""
    from ..models_download import background_model  # imported here: it reads this module's names

    return background_model(models_dir)


_READINESS: dict[str, tuple[float, EngineStatus]] = {}  # models folder → (checked at, status)


def cached_readiness(models_dir) -> EngineStatus:
    """`readiness`, checked again after `STATUS_TTL_S`; one answer per models folder, so the engines that read
    the same models (image and multi-view) become ready together."""
    now = time.monotonic()
    key = str(models_dir)
    entry = _READINESS.get(key)
    if entry is None or now - entry[0] > STATUS_TTL_S:
        entry = _READINESS[key] = (now, readiness(models_dir))
    return entry[1]


def readiness(models_dir) -> EngineStatus:
    """Ready when every model is on disk (background removal is optional, and any of the background models
    does: images with real transparency need none)."""
    entries = model_check(models_dir)
    missing = [(mid, reason) for mid, present, reason in entries if not present]
    blocking = [(mid, reason) for mid, reason in missing if mid != BACKGROUND_MODEL]
    if blocking:
        names = "; ".join(f"{mid}: {reason}" if reason else mid for mid, reason in blocking)
        return EngineStatus(False, f"Models missing in {models_dir}: {names}. {DOWNLOAD_HINT}")
    if background_in_use(models_dir) is None:
        return EngineStatus(
            True,
            "No background-removal model is installed: only images with a transparent background "
            f"can be used. {DOWNLOAD_HINT}",
        )
    return EngineStatus(True, "")


def sampler_kwargs(params: Any) -> dict[str, Any]:
    return {
        "seed": params.seed,
        "pipeline_type": params.pipeline_type,
        "sparse_structure_sampler_params": params.sparse_structure_sampler_params.overrides(),
        "shape_slat_sampler_params": params.shape_slat_sampler_params.overrides(),
        "tex_slat_sampler_params": params.tex_slat_sampler_params.overrides(),
        "max_num_tokens": params.max_num_tokens,
    }


def trellis_stage_plan(params: Any) -> list[tuple[str, float]]:
    """Relative costs of the pipeline's stages (the names it reports); sampling steps dominate."""
    ss = params.sparse_structure_sampler_params.steps or 12
    shape = params.shape_slat_sampler_params.steps or 12
    tex = params.tex_slat_sampler_params.steps or 12
    plan = [
        ("loading", 1.0),
        ("preprocess", 0.5),
        ("conditioning", 1.0),
        ("sparse_structure", float(ss)),
        ("shape_slat", float(shape)),
    ]
    if params.pipeline_type.endswith("cascade"):
        plan.append(("shape_slat_hr", 1.5 * shape))
    return plan + [("tex_slat", float(tex)), ("decode", 3.0), ("saving", 0.2), ("export", 6.0)]


class Trellis2Engine(Engine):
    name = "trellis2"
    label = "TRELLIS.2"

    def __init__(self, models_dir, device: str | None = None) -> None:
        super().__init__(models_dir, device)
        self._pipeline = None
        _READINESS.pop(str(models_dir), None)  # a new engine looks at the folder afresh

    def status(self) -> EngineStatus:
        return cached_readiness(self.models_dir)

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def _pipeline_class(self):
        from trellis2.pipelines import Trellis2ImageTo3DPipeline

        return Trellis2ImageTo3DPipeline

    def load(self) -> None:
        if self._pipeline is None:
            pipeline = self._pipeline_class().from_pretrained(self.models_dir, device=self.device)
            background = background_in_use(self.models_dir)
            if background is not None:  # e.g. the MIT BiRefNet instead of pipeline.json's RMBG-2.0
                pipeline.models.config.rembg_model = background
            self._pipeline = pipeline

    def unload(self) -> None:
        self._pipeline = None
        free_accelerator_memory()

    def stage_plan(self, params: Any) -> list[tuple[str, float]]:
        return trellis_stage_plan(params)

    def sampler_defaults(self) -> dict[str, dict[str, Any]]:
        """The sampler `params` of the models folder's `pipeline.json` (the official values)."""
        from trellis2.pipelines.model_paths import find_repository
        from trellis2.pipelines.pipeline_config import PIPELINE_REPO, PipelineConfig, PipelineConfigError

        folder = find_repository(self.models_dir, PIPELINE_REPO)
        if folder is None or not (folder / "pipeline.json").is_file():
            return {}
        try:
            config = PipelineConfig.load(folder / "pipeline.json")
        except (PipelineConfigError, OSError):
            return {}
        return {f"{stage}_params": dict(getattr(config, stage).params) for stage in SAMPLER_STAGES}

    def run(self, request: EngineRequest, progress, cancel):
        self.load()
        structure = self.structure_for(request) if request.params.structure == "fresnel" else None
        return self._pipeline.run(
            request.images[0],
            **sampler_kwargs(request.params),
            progress=progress,
            cancel=cancel,
            structure=structure,
        )

    def structure_for(self, request: EngineRequest):
        """The sparse structure of `structure: "fresnel"`: the draft's (a refine job has its copy), else a
        prediction of the built-in Fresnel on the same image and seed."""
        structure = request.extra.get("structure")
        if structure is None:
            from fresnel.pipeline import FresnelPipeline

            structure = FresnelPipeline.from_checkpoint(device=self.device).structure(
                request.images[0], request.params.seed
            )
        return structure
