"""The export vocabulary: which asset formats the export writes (name, label, file extension, media type).

`o_voxel.export.export_asset` writes each of them; `validation.SUPPORTED_TEXTURE_SIZES` lists the texture sizes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    """One asset format: `name` is what callers pass as `fmt`, `extension` the written file's suffix."""

    name: str
    label: str
    extension: str
    media_type: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("glb", "GLB", "glb", "model/gltf-binary"),
        ExportFormat("obj", "OBJ (zip)", "zip", "application/zip"),
        ExportFormat("stl", "STL", "stl", "model/stl"),
        ExportFormat("ply", "PLY", "ply", "application/ply"),
    )
}
