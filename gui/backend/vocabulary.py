"""The words every layer shares, read from the module that owns each one (never copied here):

| fact | owner |
| --- | --- |
| pipeline types | `trellis2.pipelines.pipeline_config.PIPELINE_TYPES` |
| multi-view modes | `trellis2.pipelines.multiview.MULTIVIEW_MODES` |
| export formats (label, extension, media type) | `o_voxel.formats.EXPORT_FORMATS` |
| texture sizes | `o_voxel.validation.SUPPORTED_TEXTURE_SIZES` |
| alpha modes, up axes per format | `o_voxel.export.ALPHA_MODES`, `o_voxel.export.UP_AXES` |
| stage names people read | here (`STAGE_NAMES`) |

Each accessor reads its owner at call time, so the API, the CLI and the renderer (through `GET /api/config`)
follow a change in the owning module. The engine packages are imported on first use, so a broken engine
package does not stop the server from starting. Only the words people read (labels) live here.
"""

from __future__ import annotations

from o_voxel import formats, validation
from o_voxel.formats import ExportFormat

# What a person choosing a pipeline type should know about it (shown after its name in menus).
PIPELINE_TYPE_NOTES = {
    "512": "fastest",
    "1024": "detailed, one pass",
    "1024_cascade": "balanced",
    "1536_cascade": "most detail",
}


# The words for the stages engines and the export report (`engine:sub-step` is shown as "Engine: sub-step");
# an id without a name here is made readable, never hidden.
STAGE_NAMES = {
    "queued": "Waiting in queue",
    "starting": "Starting",
    "loading": "Loading models",
    "preprocess": "Preparing the image",
    "conditioning": "Reading the image",
    "sparse_structure": "Sampling the structure",
    "shape_slat": "Sampling the shape",
    "shape_slat_hr": "Refining the shape",
    "tex_slat": "Sampling the texture",
    "decode": "Decoding",
    "network": "Predicting the shape",
    "surface": "Building the surface",
    "saving": "Saving the generation",
    "export": "Exporting",
    "fill holes": "filling holes",
    "simplify": "simplifying the mesh",
    "remesh + simplify": "remeshing",
    "clean up": "cleaning the mesh",
    "uv unwrap": "unwrapping UVs",
    "bake textures": "baking textures",
    "assemble": "assembling the model",
    "vertex colours": "colouring vertices",
    "done": "Done",
}


def stage_name(stage: str) -> str:
    """`export:uv unwrap` → `Exporting: unwrapping UVs` (the renderer does the same with `stage_names`)."""
    if not stage:
        return ""
    head, _, rest = stage.partition(":")
    readable = head.replace("_", " ").replace(".", " ").replace("-", " ").strip()
    words = STAGE_NAMES.get(head) or readable[:1].upper() + readable[1:]
    if rest:
        sub = STAGE_NAMES.get(rest) or rest.replace("_", " ").replace(".", " ").replace("-", " ").strip()
        return f"{words}: {sub}"
    return words


def pipeline_types() -> tuple[str, ...]:
    from trellis2.pipelines import pipeline_config

    return tuple(pipeline_config.PIPELINE_TYPES)


def pipeline_type_label(name: str) -> str:
    """`1024_cascade` → `1024 cascade — balanced` (a type without a note shows its name alone)."""
    words = name.replace("_", " ")
    note = PIPELINE_TYPE_NOTES.get(name)
    return f"{words} — {note}" if note else words


def multiview_modes() -> tuple[str, ...]:
    from trellis2.pipelines import multiview

    return tuple(multiview.MULTIVIEW_MODES)


def export_formats() -> dict[str, ExportFormat]:
    return dict(formats.EXPORT_FORMATS)


def export_format_names() -> tuple[str, ...]:
    return tuple(formats.EXPORT_FORMATS)


def texture_sizes() -> tuple[int, ...]:
    return tuple(int(size) for size in validation.SUPPORTED_TEXTURE_SIZES)


def choice(name: str, label: str) -> dict[str, str]:
    return {"value": name, "label": label}


def vocabulary() -> dict[str, list[dict] | dict[str, str]]:
    """The menus of `GET /api/config`: every choice with the label a person reads."""
    return {
        "pipeline_types": [choice(t, pipeline_type_label(t)) for t in pipeline_types()],
        "multiview_modes": [choice(m, m.capitalize()) for m in multiview_modes()],
        "export_formats": [
            {"value": f.name, "label": f.label, "extension": f.extension, "media_type": f.media_type}
            for f in export_formats().values()
        ],
        "texture_sizes": [{"value": size, "label": f"{size} px"} for size in texture_sizes()],
        "stage_names": dict(STAGE_NAMES),
    }


def alpha_modes() -> tuple[str, ...]:
    """The alpha modes of the export (`o_voxel.export.ALPHA_MODES`: 'auto', then the glTF modes)."""
    from o_voxel.export import ALPHA_MODES

    return tuple(ALPHA_MODES)


def z_up_axes() -> tuple[str, ...]:
    """The up axes of the formats whose convention is z-up (STL, PLY; `o_voxel.export.UP_AXES`), default first."""
    from o_voxel.export import UP_AXES

    return next(axes for axes in UP_AXES.values() if axes[0] == "z")
