"""Configuration: the official `pipeline.json` (spec §1.2), parsed and checked, and the checks of
the per-run arguments that override it (pipeline type, seed, token budget, sampler parameters)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PIPELINE_REPO = "microsoft/TRELLIS.2-4B"  # the official repository that holds `pipeline.json`
PIPELINE_TYPES = ("512", "1024", "1024_cascade", "1536_cascade")
SAMPLER_KEYS = ("sparse_structure_sampler", "shape_slat_sampler", "tex_slat_sampler")
SAMPLER_PARAM_KEYS = {"steps", "guidance_strength", "guidance_rescale", "guidance_interval", "rescale_t"}

MODEL_KEYS = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "shape_slat_flow_model_512",
    "shape_slat_flow_model_1024",
    "shape_slat_decoder",
    "tex_slat_flow_model_512",
    "tex_slat_flow_model_1024",
    "tex_slat_decoder",
)

# The checkpoints each pipeline type samples and decodes with.
MODELS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "512": (
        "sparse_structure_flow_model",
        "sparse_structure_decoder",
        "shape_slat_flow_model_512",
        "tex_slat_flow_model_512",
        "shape_slat_decoder",
        "tex_slat_decoder",
    ),
    "1024": (
        "sparse_structure_flow_model",
        "sparse_structure_decoder",
        "shape_slat_flow_model_1024",
        "tex_slat_flow_model_1024",
        "shape_slat_decoder",
        "tex_slat_decoder",
    ),
    "1024_cascade": (
        "sparse_structure_flow_model",
        "sparse_structure_decoder",
        "shape_slat_flow_model_512",
        "shape_slat_flow_model_1024",
        "tex_slat_flow_model_1024",
        "shape_slat_decoder",
        "tex_slat_decoder",
    ),
}
MODELS_FOR_TYPE["1536_cascade"] = MODELS_FOR_TYPE["1024_cascade"]


class PipelineConfigError(ValueError):
    """`pipeline.json` is missing a field or has a value of the wrong kind."""


@dataclass
class SamplerConfig:
    name: str
    args: dict[str, Any]
    params: dict[str, Any]


@dataclass
class Normalization:
    mean: list[float]
    std: list[float]


@dataclass
class PipelineConfig:
    name: str
    models: dict[str, str]
    sparse_structure_sampler: SamplerConfig
    shape_slat_sampler: SamplerConfig
    tex_slat_sampler: SamplerConfig
    shape_slat_normalization: Normalization
    tex_slat_normalization: Normalization
    image_cond_model: str
    rembg_model: str
    default_pipeline_type: str = "1024_cascade"
    low_vram: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str) -> PipelineConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PipelineConfigError(f"{path} is not valid JSON: {exc}") from exc
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: dict[str, Any], source: str = "pipeline.json") -> PipelineConfig:
        def need(mapping: Any, key: str, where: str) -> Any:
            if not isinstance(mapping, dict) or key not in mapping:
                raise PipelineConfigError(f"{source}: missing '{where}{key}'")
            return mapping[key]

        args = need(raw, "args", "")
        models = need(args, "models", "args.")
        if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
            raise PipelineConfigError(f"{source}: 'args.models' must map names to checkpoint paths")

        def sampler(key: str) -> SamplerConfig:
            entry = need(args, key, "args.")
            return SamplerConfig(
                need(entry, "name", f"args.{key}."),
                dict(entry.get("args", {})),
                dict(entry.get("params", {})),
            )

        def normalization(key: str) -> Normalization:
            entry = need(args, key, "args.")
            mean, std = need(entry, "mean", f"args.{key}."), need(entry, "std", f"args.{key}.")
            if len(mean) != len(std):
                raise PipelineConfigError(f"{source}: args.{key} mean and std differ in length")
            return Normalization([float(v) for v in mean], [float(v) for v in std])

        default_type = str(args.get("default_pipeline_type", "1024_cascade"))
        if default_type not in PIPELINE_TYPES:
            raise PipelineConfigError(f"{source}: unknown default_pipeline_type {default_type!r}")
        known = {
            "models",
            "sparse_structure_sampler",
            "shape_slat_sampler",
            "tex_slat_sampler",
            "shape_slat_normalization",
            "tex_slat_normalization",
            "image_cond_model",
            "rembg_model",
            "default_pipeline_type",
            "low_vram",
        }
        return cls(
            name=str(raw.get("name", "Trellis2ImageTo3DPipeline")),
            models=dict(models),
            sparse_structure_sampler=sampler("sparse_structure_sampler"),
            shape_slat_sampler=sampler("shape_slat_sampler"),
            tex_slat_sampler=sampler("tex_slat_sampler"),
            shape_slat_normalization=normalization("shape_slat_normalization"),
            tex_slat_normalization=normalization("tex_slat_normalization"),
            image_cond_model=str(
                need(need(args, "image_cond_model", "args."), "args", "args.image_cond_model.")["model_name"]
            ),
            rembg_model=str(args.get("rembg_model", {}).get("args", {}).get("model_name", "briaai/RMBG-2.0")),
            default_pipeline_type=default_type,
            low_vram=bool(args.get("low_vram", True)),
            extra={k: v for k, v in args.items() if k not in known},
        )


def check_pipeline_type(pipeline_type: str | None, default: str) -> str:
    """`pipeline_type` (or `default` for None) as a known pipeline type name."""
    pipeline_type = default if pipeline_type is None else str(pipeline_type)
    if pipeline_type not in PIPELINE_TYPES:
        raise ValueError(
            f"unknown pipeline_type {pipeline_type!r}; choose one of {', '.join(PIPELINE_TYPES)}"
        )
    return pipeline_type


def check_run_arguments(seed: int, max_num_tokens: int) -> None:
    """Reject a seed outside `[0, 2^63)` and a token budget that is not a positive integer."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(max_num_tokens, bool) or not isinstance(max_num_tokens, int) or max_num_tokens < 1:
        raise ValueError(f"max_num_tokens must be a positive integer, got {max_num_tokens!r}")


def check_sampler_params(stage: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Reject unknown keys and bad values with a message that names the stage and the field."""
    params = dict(params or {})
    unknown = set(params) - SAMPLER_PARAM_KEYS
    if unknown:
        raise ValueError(
            f"{stage}: unknown sampler parameter(s) {sorted(unknown)}; allowed: {sorted(SAMPLER_PARAM_KEYS)}"
        )
    if "steps" in params:
        steps = params["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 500:
            raise ValueError(f"{stage}: steps must be an integer from 1 to 500, got {steps!r}")
    for key in ("guidance_strength", "guidance_rescale", "rescale_t"):
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], (int, float))):
            raise ValueError(f"{stage}: {key} must be a number, got {params[key]!r}")
    if "guidance_rescale" in params and not 0.0 <= params["guidance_rescale"] <= 1.0:
        raise ValueError(f"{stage}: guidance_rescale must be within [0, 1], got {params['guidance_rescale']}")
    if "rescale_t" in params and params["rescale_t"] <= 0:
        raise ValueError(f"{stage}: rescale_t must be positive, got {params['rescale_t']}")
    if "guidance_interval" in params:
        interval = params["guidance_interval"]
        if not isinstance(interval, (list, tuple)) or len(interval) != 2 or interval[0] > interval[1]:
            raise ValueError(
                f"{stage}: guidance_interval must be [low, high] with low <= high, got {interval!r}"
            )
    return params
