"""Request parameters with the official names, defaults and ranges (TRELLIS.2 `pipeline.json`, `app.py`).

The ranges and defaults are written once, here; `GET /api/config` serves them (`describe_fields`) and the
renderer builds its inputs from that. Choices (pipeline types, texture sizes, formats, modes) are checked
against their owning module at validation time (`OneOf`), so they are never copied into this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic_core import PydanticCustomError, core_schema

from . import vocabulary

MAX_SEED = 2**31 - 1
MAX_NAME = 48  # characters of an asset name (it is part of the export's file name, see `export_file_name`)


@dataclass(frozen=True)
class OneOf:
    """Field metadata: the value must be one of `source()` (read when validating, and for the schema)."""

    source: Callable[[], Sequence[Any]]

    def check(self, value: Any) -> Any:
        allowed = tuple(self.source())
        if value not in allowed:
            raise PydanticCustomError(
                "not_allowed",
                "must be one of {allowed}; got {value}",
                {"allowed": ", ".join(map(str, allowed)), "value": repr(value)},
            )
        return value

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source_type))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict:
        out = handler(schema)
        out["enum"] = list(self.source())
        return out


def spelled_as(choices: Callable[[], Sequence[str]]) -> BeforeValidator:
    """Field metadata: a string is matched to `choices()` ignoring case ('blend' -> 'BLEND')."""

    def match(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return next((c for c in choices() if c.lower() == value.strip().lower()), value)

    return BeforeValidator(match)


def sanitise_name(value: str | None) -> str | None:
    """An asset name safe in file and glTF names: runs of other characters become '_', at most `MAX_NAME`
    characters; nothing left means no name (`None`)."""
    if value is None:
        return None
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", value).strip("_-")[:MAX_NAME].strip("_-")
    return cleaned or None


PipelineType = Annotated[str, OneOf(vocabulary.pipeline_types)]
TextureSize = Annotated[int, OneOf(vocabulary.texture_sizes)]
ExportFormatName = Annotated[str, OneOf(vocabulary.export_format_names)]
MultiViewMode = Annotated[str, OneOf(vocabulary.multiview_modes)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, title="Seed")]
AlphaMode = Annotated[str, spelled_as(vocabulary.alpha_modes), OneOf(vocabulary.alpha_modes)]
UpAxis = Annotated[str, spelled_as(vocabulary.z_up_axes), OneOf(vocabulary.z_up_axes)]
AssetName = Annotated[str | None, AfterValidator(sanitise_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplerParams(Strict):
    """One flow sampler's call parameters; `None` keeps the value of the pipeline's `pipeline.json`."""

    steps: int | None = Field(None, ge=1, le=50, title="Steps")
    guidance_strength: float | None = Field(None, ge=1.0, le=10.0, title="Guidance")
    guidance_rescale: float | None = Field(None, ge=0.0, le=1.0, title="Rescale")
    rescale_t: float | None = Field(None, ge=1.0, le=6.0, title="Rescale t")

    def overrides(self) -> dict[str, float | int]:
        """Only what the client set, as the pipeline's `*_sampler_params` dict."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ExportParams(Strict):
    """O-Voxel export settings (mesh and texture: defaults of the official demo)."""

    decimation_target: int = Field(500_000, ge=10_000, le=2_000_000, title="Target faces")
    texture_size: TextureSize = Field(2048, title="Texture size")
    remesh: bool = Field(True, title="Remesh")
    alpha_mode: AlphaMode = Field(
        "auto",
        title="Alpha mode",
        description="auto: opaque when the model's alpha is solid everywhere, else blend",
    )
    alpha_cutoff: float = Field(0.5, ge=0.0, le=1.0, title="Alpha cutoff (mask)")
    up_axis: UpAxis = Field(default_factory=lambda: vocabulary.z_up_axes()[0], title="Up axis (STL, PLY)")
    name: AssetName = Field(
        None,
        title="Asset name",
        description="names the material, textures, mesh and node: genesis_<name>",
    )

    def export_params(self) -> ExportParams:
        return ExportParams(**{name: getattr(self, name) for name in ExportParams.model_fields})


class ExportRequest(ExportParams):
    """`POST /api/jobs/{id}/export`."""

    format: ExportFormatName = Field("glb", title="Format")


class GenerateParams(ExportParams):
    """`params` of `POST /api/generate/image`."""

    seed: Seed = 0
    pipeline_type: PipelineType = Field("1024_cascade", title="Quality (pipeline type)")
    sparse_structure_sampler_params: SamplerParams = Field(
        default_factory=SamplerParams, title="Sparse structure"
    )
    shape_slat_sampler_params: SamplerParams = Field(default_factory=SamplerParams, title="Shape")
    tex_slat_sampler_params: SamplerParams = Field(default_factory=SamplerParams, title="Texture")
    max_num_tokens: int = Field(49152, ge=1024, le=262144, title="Token budget")


class MultiViewParams(GenerateParams):
    """`params` of `POST /api/generate/multiview`: how the views are combined per denoising step."""

    mode: MultiViewMode = Field("stochastic", title="Combine views")


class FastParams(ExportParams):
    """`params` of `POST /api/generate/fast` (Fresnel): draft export defaults, so a model comes in seconds."""

    decimation_target: int = Field(50_000, ge=10_000, le=2_000_000, title="Target faces")
    texture_size: TextureSize = Field(1024, title="Texture size")
    remesh: bool = Field(False, title="Remesh")
    seed: Seed = 0


# -- describing the models for GET /api/config ---------------------------------------------------------------
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
LIMITS = {
    annotated_types.Ge: ("minimum", "ge"),
    annotated_types.Le: ("maximum", "le"),
    annotated_types.Gt: ("exclusive_minimum", "gt"),
    annotated_types.Lt: ("exclusive_maximum", "lt"),
}


def _plain_type(annotation: Any) -> tuple[Any, bool]:
    """`int | None` → `(int, True)`; `Annotated[...]` is unwrapped by pydantic already."""
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def describe_fields(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Every field of `model` as `{type, label, default, nullable, minimum, maximum, choices}` (nested models
    as `{type: "object", label, fields}`), derived from the pydantic definitions."""
    out: dict[str, dict[str, Any]] = {}
    for name, info in model.model_fields.items():
        annotation, nullable = _plain_type(info.annotation)
        label = info.title or name.replace("_", " ").capitalize()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out[name] = {"type": "object", "label": label, "fields": describe_fields(annotation)}
            continue
        entry: dict[str, Any] = {
            "type": JSON_TYPES.get(annotation, "string"),
            "label": label,
            "default": info.get_default(call_default_factory=True),
            "nullable": nullable,
        }
        if info.description:
            entry["description"] = info.description
        for meta in info.metadata:
            for kind, (key, attribute) in LIMITS.items():
                if isinstance(meta, kind):
                    entry[key] = getattr(meta, attribute)
            if isinstance(meta, OneOf):
                entry["choices"] = list(meta.source())
        out[name] = entry
    return out
