"""Request parameters with the official names, defaults and ranges (TRELLIS.2 `pipeline.json`, `app.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PipelineType = Literal["512", "1024", "1024_cascade", "1536_cascade"]
ExportFormat = Literal["glb", "obj", "stl", "ply"]
MultiViewMode = Literal["stochastic", "multidiffusion"]
EngineName = Literal["trellis2", "multiview", "fresnel"]
MAX_SEED = 2**31 - 1
MIN_VIEWS, MAX_VIEWS = 2, 8


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplerParams(Strict):
    """One flow sampler's call parameters; `None` keeps the value of the pipeline's `pipeline.json`."""

    steps: int | None = Field(None, ge=1, le=50)
    guidance_strength: float | None = Field(None, ge=1.0, le=10.0)
    guidance_rescale: float | None = Field(None, ge=0.0, le=1.0)
    rescale_t: float | None = Field(None, ge=1.0, le=6.0)

    def overrides(self) -> dict[str, float | int]:
        """Only what the client set, as the pipeline's `*_sampler_params` dict."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ExportParams(Strict):
    """O-Voxel GLB export settings (defaults of the official demo)."""

    decimation_target: int = Field(500_000, ge=10_000, le=2_000_000)
    texture_size: int = Field(2048, ge=512, le=4096)
    remesh: bool = True

    def export_params(self) -> ExportParams:
        return ExportParams(**{name: getattr(self, name) for name in ExportParams.model_fields})


class ExportRequest(ExportParams):
    """`POST /api/jobs/{id}/export`."""

    format: ExportFormat = "glb"


class GenerateParams(ExportParams):
    """`params` of `POST /api/generate/image`."""

    seed: int = Field(0, ge=0, le=MAX_SEED)
    pipeline_type: PipelineType = "1024_cascade"
    sparse_structure_sampler_params: SamplerParams = Field(default_factory=SamplerParams)
    shape_slat_sampler_params: SamplerParams = Field(default_factory=SamplerParams)
    tex_slat_sampler_params: SamplerParams = Field(default_factory=SamplerParams)
    max_num_tokens: int = Field(49152, ge=1024, le=262144)


class MultiViewParams(GenerateParams):
    """`params` of `POST /api/generate/multiview`: how the views are combined per denoising step."""

    mode: MultiViewMode = "stochastic"


class FastParams(ExportParams):
    """`params` of `POST /api/generate/fast` (Fresnel, a distilled one-step student)."""

    seed: int = Field(0, ge=0, le=MAX_SEED)


PARAMS_BY_ENGINE: dict[str, type[ExportParams]] = {
    "trellis2": GenerateParams,
    "multiview": MultiViewParams,
    "fresnel": FastParams,
}
