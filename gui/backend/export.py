"""Turning a stored generation into asset files: O-Voxel `to_glb` (when installed) + `export_asset`, which writes
every format of `o_voxel.formats.EXPORT_FORMATS`."""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh

from o_voxel.asset import MeshWithVoxel

from .config import COMMAND_NAME
from .params import ExportParams
from .vocabulary import export_formats

ProgressFn = Callable[[str, int, int], None]
Converter = Callable[[MeshWithVoxel, ExportParams, "ProgressFn | None"], trimesh.Trimesh]


def has_ovoxel_export() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("o_voxel.postprocess", "o_voxel.export"))


def asset_extension(fmt: str) -> str:
    """The suffix of the file the export writes for `fmt` (OBJ is a .zip of obj + mtl + textures)."""
    return export_formats()[fmt].extension


def export_file_name(fmt: str, params: ExportParams) -> str:
    """Our own, deterministic file name for one export setting (never a client string)."""
    settings = f"d{params.decimation_target}-t{params.texture_size}-{'r' if params.remesh else 'n'}"
    return f"model-{fmt}-{settings}.{asset_extension(fmt)}"


def download_name(job_id: str, engine: str, seed: int, ext: str) -> str:
    """The name offered to the browser (the export module's naming)."""
    from o_voxel.export import asset_file_name

    return re.sub(r"[^A-Za-z0-9_.-]", "_", asset_file_name(COMMAND_NAME, engine, seed, job_id, ext))


def to_trimesh(
    mesh: MeshWithVoxel, params: ExportParams, progress: ProgressFn | None = None
) -> trimesh.Trimesh:
    """The textured, decimated export mesh (Y-up, as glTF wants)."""
    if has_ovoxel_export():
        from o_voxel.postprocess import to_glb

        origin = mesh.origin.detach().float().cpu()
        extent = float(mesh.voxel_size) * mesh.resolution
        aabb = torch.stack([origin, origin + extent]).to(mesh.vertices.device)
        return to_glb(
            vertices=mesh.vertices,
            faces=mesh.faces,
            attr_volume=mesh.attrs,
            coords=mesh.coords,
            attr_layout=mesh.layout,
            aabb=aabb,
            voxel_size=mesh.voxel_size,
            decimation_target=params.decimation_target,
            texture_size=params.texture_size,
            remesh=params.remesh,
            progress=progress,
        )
    return vertex_colored_mesh(mesh, params, progress)


def vertex_colored_mesh(
    mesh: MeshWithVoxel, params: ExportParams | None = None, progress: ProgressFn | None = None
) -> trimesh.Trimesh:
    """A quick conversion without the O-Voxel export (used when it is not installed): the raw mesh with each
    vertex coloured by its nearest voxel's base colour, no decimation and no texture."""
    from scipy.spatial import cKDTree

    if progress:
        progress("export", 0, 1)
    vertices = mesh.vertices.detach().float().cpu().numpy()
    faces = mesh.faces.detach().long().cpu().numpy()
    centres = (mesh.coords.detach().float().cpu().numpy() + 0.5) * mesh.voxel_size + mesh.origin.cpu().numpy()
    attrs = mesh.attrs.detach().float().cpu().numpy()
    color = (
        attrs[:, mesh.layout["base_color"]] if "base_color" in mesh.layout else np.full((len(attrs), 3), 0.8)
    )
    if len(centres):
        _, nearest = cKDTree(centres).query(vertices)
        rgb = np.clip(color[nearest], 0.0, 1.0)
    else:
        rgb = np.full((len(vertices), 3), 0.8)
    rgba = np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)
    z_up_to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)
    out = trimesh.Trimesh(
        vertices @ z_up_to_y_up.T, faces, vertex_colors=(rgba * 255).astype(np.uint8), process=False
    )
    if progress:
        progress("export", 1, 1)
    return out


def write_asset(mesh: trimesh.Trimesh, fmt: str, destination: Path) -> None:
    """Write `mesh` as `fmt` to `destination` atomically (temporary folder beside it, then rename)."""
    from o_voxel.export import export_asset

    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=destination.parent) as tmp:
        written = Path(export_asset(mesh, Path(tmp), "asset", fmt))
        if not written.is_file() or written.stat().st_size == 0:
            raise RuntimeError(f"the {fmt.upper()} export wrote no file")
        shutil.move(str(written), destination)


def export_generation(
    meshes: list[MeshWithVoxel],
    params: ExportParams,
    fmt: str,
    destination: Path,
    progress: ProgressFn | None = None,
    converter: Converter | None = None,
) -> dict[str, int]:
    """Export the first mesh of a generation; returns mesh statistics for the job result.
    `converter` replaces the O-Voxel conversion (e.g. `vertex_colored_mesh` for a quick preview)."""
    out = (converter or to_trimesh)(meshes[0], params, progress)
    write_asset(out, fmt, destination)
    return {
        "vertices": int(len(out.vertices)),
        "faces": int(len(out.faces)),
        "file_bytes": int(destination.stat().st_size),
    }
