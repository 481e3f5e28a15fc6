"""Request parameters with the official names, defaults and ranges (TRELLIS.2 `pipeline.json`, `app.py`).

The ranges and defaults are written once, here; `GET /api/config` serves them (`describe_fields`) and the
renderer builds its inputs from that, with each field's one-line `description` in words an artist reads. On a
machine without a GPU the export defaults are lighter (`device_defaults`, the only adjustment of these
defaults). Choices (pipeline types, texture sizes, formats, modes) are checked
against their owning module at validation time (`OneOf`), so they are never copied into this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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

    steps: int | None = Field(
        None,
        ge=1,
        le=50,
        title="Steps",
        description="More steps refine the result further; each one adds time.",
    )
    guidance_strength: float | None = Field(
        None,
        ge=1.0,
        le=10.0,
        title="Guidance",
        description="How closely it follows your picture: higher sticks closer, too high looks harsh.",
    )
    guidance_rescale: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        title="Rescale",
        description="Calms the harsh, over-contrasted look strong guidance can give (0 leaves it).",
    )
    rescale_t: float | None = Field(
        None,
        ge=1.0,
        le=6.0,
        title="Rescale t",
        description="Where the steps go: higher spends more on the big forms, lower on fine detail.",
    )

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
        default_factory=SamplerParams,
        title="Sparse structure",
        description="The rough volume: where the object is and how big.",
    )
    shape_slat_sampler_params: SamplerParams = Field(
        default_factory=SamplerParams,
        title="Shape",
        description="The surface: its form and the fine detail of the geometry.",
    )
    tex_slat_sampler_params: SamplerParams = Field(
        default_factory=SamplerParams,
        title="Texture",
        description="The colours and materials painted onto the surface.",
    )
    max_num_tokens: int = Field(
        49152,
        ge=1024,
        le=262144,
        title="Token budget",
        description="The most detail the finer passes may hold; lower it when memory runs out.",
    )
    structure: Literal["sampled", "fresnel"] = Field(
        "sampled",
        title="Structure",
        description="sampled: TRELLIS.2 finds the rough volume itself; fresnel: it keeps a Fast draft's (Refine).",
    )
    draft_job: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", title="Draft", description="the Fast job this one refines"
    )


class MultiViewParams(GenerateParams):
    """`params` of `POST /api/generate/multiview`: how the views are combined per denoising step."""

    mode: MultiViewMode = Field("stochastic", title="Combine views")


def fresnel_models() -> tuple[str, ...]:
    """The Fresnel models on offer, the built-in one first (owner: `engines.fresnel.model_names`)."""
    from .engines.fresnel import model_names

    return model_names()


FresnelModel = Annotated[str, OneOf(fresnel_models)]


class FastParams(ExportParams):
    """`params` of `POST /api/generate/fast` (Fresnel): draft export defaults, so a model comes in seconds."""

    decimation_target: int = Field(50_000, ge=10_000, le=2_000_000, title="Target faces")
    texture_size: TextureSize = Field(1024, title="Texture size")
    remesh: bool = Field(False, title="Remesh")
    seed: Seed = 0
    fresnel_model: FresnelModel = Field(
        default_factory=lambda: fresnel_models()[0],
        title="Model",
        description="the built-in Fresnel, or a student distilled from TRELLIS.2 (genesis fresnel distill)",
    )


# -- defaults suited to the device ---------------------------------------------------------------------------
# Lighter export settings on a machine without a GPU (docs/benchmarks/export-cpu.md, a 2-core CPU, 1M faces in,
# 500k faces and a 2048 texture out): the texture bake takes most of the GLB export there (17-23 s of 25-53 s on
# an idle machine, up to 207 s on a busy one) and grows with the texture's area, and remesh + simplify adds
# 18-26 s (122 s at 5M faces). A 1024 texture has a quarter of the texels to bake, no remesh skips that pass (the
# surface is decimated as it is, as for STL and PLY), and 100,000 faces make the clean-up, the unwrap and the
# files a fifth as large; the model keeps a full texture and mesh. Measured with `tools/bench_export.py --device cpu
# --faces 1000000 --formats glb --remesh off` on 2026-12-03 (the same 2 shared cores): 97 s with the official
# 500,000 faces and 2048 texture (the bake 85 s), 18 s with these (the bake 4 s).
CPU_EXPORT_DEFAULTS: dict[str, Any] = {"texture_size": 1024, "decimation_target": 100_000, "remesh": False}


def device_defaults(model: type[BaseModel], gpu: bool) -> dict[str, Any]:
    """The defaults of `model`'s fields that differ on this machine: none with a GPU; without one, each of
    `CPU_EXPORT_DEFAULTS` that is lighter than the model's own (the Fast engine's drafts are lighter already)."""
    if gpu:
        return {}
    out: dict[str, Any] = {}
    for name, light in CPU_EXPORT_DEFAULTS.items():
        info = model.model_fields.get(name)
        if info is None:
            continue
        default = info.get_default(call_default_factory=True)
        lighter = (default and light) if isinstance(light, bool) else min(default, light)
        if lighter != default:
            out[name] = lighter
    return out


def device_note(changes: dict[str, Any]) -> str:
    """One line for the app when `device_defaults` made defaults lighter ("" when it did not); the lighter values
    themselves are the fields' defaults."""
    return "Lighter export defaults: this machine has no GPU." if changes else ""


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


def describe_fields(
    model: type[BaseModel], defaults: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every field of `model` as `{type, label, description, default, nullable, minimum, maximum, choices}`
    (nested models as `{type: "object", label, description, fields}`), derived from the pydantic definitions;
    `defaults` replaces some defaults (`device_defaults`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, info in model.model_fields.items():
        annotation, nullable = _plain_type(info.annotation)
        label = info.title or name.replace("_", " ").capitalize()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out[name] = {"type": "object", "label": label, "fields": describe_fields(annotation)}
            if info.description:
                out[name]["description"] = info.description
            continue
        entry: dict[str, Any] = {
            "type": JSON_TYPES.get(annotation, "string"),
            "label": label,
            "default": (defaults or {}).get(name, info.get_default(call_default_factory=True)),
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
