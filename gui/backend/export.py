"""Turning a stored generation into asset files: O-Voxel `to_glb` (textured formats) or `to_vertex_colored_mesh`
(STL, PLY: no bake) when installed, then `export_asset`, which writes every format of
`o_voxel.formats.EXPORT_FORMATS`."""

from __future__ import annotations

import importlib.util
import logging
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
from .files import is_job_id
from .params import ExportParams
from .vocabulary import export_formats

log = logging.getLogger("genesis.export")
ProgressFn = Callable[[str, int, int], None]
Converter = Callable[[MeshWithVoxel, ExportParams, "ProgressFn | None"], trimesh.Trimesh]
# Formats of geometry (PLY: + vertex colours and normals), written without UV unwrap or texture bake.
VERTEX_COLOUR_FORMATS = frozenset({"stl", "ply"})


def has_ovoxel_export() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("o_voxel.postprocess", "o_voxel.export"))


def asset_extension(fmt: str) -> str:
    """The suffix of the file the export writes for `fmt` (OBJ is a .zip of obj + mtl + textures)."""
    return export_formats()[fmt].extension


def bakes_textures(fmt: str) -> bool:
    """Whether `fmt` carries baked textures (and so a texture size and an alpha mode)."""
    return fmt not in VERTEX_COLOUR_FORMATS


def up_axis_for(fmt: str, params: ExportParams) -> str | None:
    """The up axis to write `fmt` with: the chosen one for the z-up formats (STL, PLY), None (the format's own
    convention, y-up) for the others."""
    from o_voxel.export import UP_AXES

    return params.up_axis if UP_AXES[fmt][0] == "z" else None


def export_file_name(fmt: str, params: ExportParams) -> str:
    """Our own, deterministic file name for one export setting (never a client string: the name is sanitised).
    Every setting that changes the file is in it, so different settings never share a file."""
    textured = bakes_textures(fmt)
    parts = [f"d{params.decimation_target}"]
    parts += [f"t{params.texture_size}"] if textured else []
    parts.append("r" if params.remesh else "n")
    if textured:
        parts.append(
            f"a{params.alpha_mode}" + (repr(params.alpha_cutoff) if params.alpha_mode == "MASK" else "")
        )
    if (up := up_axis_for(fmt, params)) is not None:
        parts.append(f"{up}up")
    if params.name:
        parts.append(params.name)
    return f"model-{fmt}-{'-'.join(parts)}.{asset_extension(fmt)}"


def asset_name(params: ExportParams, destination: Path) -> str:
    """`genesis_<name>`: the name in the settings, else the job's short id (the job folder `destination` is
    written in), else `genesis`."""
    folder = destination.parent.name
    name = params.name or (folder[:8] if is_job_id(folder) else None)
    return f"{COMMAND_NAME}_{name}" if name else COMMAND_NAME


def download_name(job_id: str, engine: str, seed: int, ext: str) -> str:
    """The name offered to the browser (the export module's naming)."""
    from o_voxel.export import asset_file_name

    return re.sub(r"[^A-Za-z0-9_.-]", "_", asset_file_name(COMMAND_NAME, engine, seed, job_id, ext))


def _ovoxel_inputs(mesh: MeshWithVoxel, params: ExportParams) -> dict:
    """The arguments `to_glb` and `to_vertex_colored_mesh` share: the mesh, its voxels and the mesh settings."""
    origin = mesh.origin.detach().float().cpu()
    extent = float(mesh.voxel_size) * mesh.resolution
    return {
        "vertices": mesh.vertices,
        "faces": mesh.faces,
        "attr_volume": mesh.attrs,
        "coords": mesh.coords,
        "attr_layout": mesh.layout,
        "aabb": torch.stack([origin, origin + extent]).to(mesh.vertices.device),
        "voxel_size": mesh.voxel_size,
        "decimation_target": params.decimation_target,
        "remesh": params.remesh,
    }


def to_trimesh(
    mesh: MeshWithVoxel, params: ExportParams, progress: ProgressFn | None = None, name: str = COMMAND_NAME
) -> trimesh.Trimesh:
    """The textured, decimated export mesh (Y-up, as glTF wants), with the alpha mode of `params`."""
    if has_ovoxel_export():
        from o_voxel.postprocess import to_glb

        return to_glb(
            **_ovoxel_inputs(mesh, params),
            texture_size=params.texture_size,
            alpha_mode=params.alpha_mode,
            alpha_cutoff=params.alpha_cutoff,
            progress=progress,
            name=name,
        )
    return vertex_colored_mesh(mesh, params, progress)


def to_untextured(
    mesh: MeshWithVoxel, params: ExportParams, progress: ProgressFn | None = None, name: str = COMMAND_NAME
) -> trimesh.Trimesh:
    """The decimated export mesh with RGBA vertex colours and normals, no texture bake (STL, PLY; Y-up)."""
    if has_ovoxel_export():
        from o_voxel.postprocess import to_vertex_colored_mesh

        return to_vertex_colored_mesh(**_ovoxel_inputs(mesh, params), progress=progress, name=name)
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


def write_asset(
    mesh: trimesh.Trimesh, fmt: str, destination: Path, name: str | None = None, up_axis: str | None = None
) -> None:
    """Write `mesh` as `fmt` to `destination` atomically (temporary folder beside it, then rename); `name` and
    `up_axis` as `o_voxel.export.export_asset` takes them (None: the mesh's name, the format's convention)."""
    from o_voxel.export import export_asset

    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=destination.parent) as tmp:
        written = Path(export_asset(mesh, Path(tmp), "asset", fmt, name=name, up_axis=up_axis))
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
    thumbnail: Path | None = None,
) -> dict[str, int]:
    """Export the first mesh of a generation as `fmt`; returns mesh statistics for the job result.

    Textured formats go through `to_trimesh` (bake, alpha mode), STL and PLY through `to_untextured`; the asset
    is named `asset_name(...)` and STL / PLY are written with the chosen up axis. `converter` replaces the O-Voxel
    conversion (e.g. `vertex_colored_mesh` for a quick preview). With `thumbnail`, a small picture of the
    exported mesh is written there too (`save_thumbnail`: a failure is logged, never raised)."""
    name = asset_name(params, destination)
    if converter is not None:
        out = converter(meshes[0], params, progress)
    else:
        out = (to_trimesh if bakes_textures(fmt) else to_untextured)(meshes[0], params, progress, name)
    write_asset(out, fmt, destination, name=name, up_axis=up_axis_for(fmt, params))
    if thumbnail is not None:
        save_thumbnail(out, thumbnail)
    return {
        "vertices": int(len(out.vertices)),
        "faces": int(len(out.faces)),
        "file_bytes": int(destination.stat().st_size),
    }


def save_thumbnail(mesh: trimesh.Trimesh, destination: Path) -> bool:
    """Write the picture of `mesh` to `destination` (`thumbnail.write_thumbnail`); whether it worked. A failure
    is logged and nothing else: the picture is a convenience, the model is what the job is for."""
    from .thumbnail import write_thumbnail

    try:
        write_thumbnail(mesh, destination)
        return True
    except Exception:  # noqa: BLE001 - any failure of the picture leaves the export as it is
        log.warning("could not make the thumbnail %s", destination, exc_info=True)
        return False
