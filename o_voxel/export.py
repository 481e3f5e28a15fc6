"""Asset files for artists: GLB (default), OBJ + MTL + PNG textures (zipped), STL, PLY; written atomically."""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .formats import EXPORT_FORMATS

FORMATS = tuple(EXPORT_FORMATS)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", str(text)).strip("-.") or "asset"


def asset_file_name(name: str, engine: str, seed: int, job_id: str, ext: str) -> str:
    """`<name>_<engine>_seed<seed>_<id>.<ext>`, with characters unsafe in file names replaced by '-'."""
    ext = ext.lower().lstrip(".")
    ext = EXPORT_FORMATS[ext].extension if ext in EXPORT_FORMATS else ext  # OBJ: a zip of obj + mtl + textures
    return f"{_slug(name)}_{_slug(engine)}_seed{int(seed)}_{_slug(job_id)}.{ext}"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _obj_zip(mesh: trimesh.Trimesh, stem: str) -> bytes:
    """OBJ with positions, UVs and normals, an MTL with PBR extensions, and PNG textures, zipped."""
    material = getattr(mesh.visual, "material", None)
    uv = getattr(mesh.visual, "uv", None)
    v = np.asarray(mesh.vertices)
    has_uv = uv is not None and len(uv) == len(v)
    faces = np.asarray(mesh.faces, dtype=np.int64) + 1
    text = io.StringIO()
    text.write(f"mtllib {stem}.mtl\no {stem}\n")
    np.savetxt(text, v, fmt="v %.6f %.6f %.6f")
    if has_uv:
        np.savetxt(text, np.asarray(uv), fmt="vt %.6f %.6f")
    np.savetxt(text, np.asarray(mesh.vertex_normals), fmt="vn %.6f %.6f %.6f")
    text.write(f"usemtl {stem}\n")
    corner = "%d/%d/%d" if has_uv else "%d//%d"
    per_corner = 3 if has_uv else 2
    np.savetxt(text, np.repeat(faces, per_corner, axis=1), fmt=f"f {corner} {corner} {corner}")
    mtl = [f"newmtl {stem}", "Ka 1.000 1.000 1.000", "Kd 1.000 1.000 1.000", "Ks 0.000 0.000 0.000", "illum 2"]
    files: dict[str, bytes] = {}
    base = getattr(material, "baseColorTexture", None)
    if base is not None:
        name = f"{stem}_basecolor.png"
        files[name] = _png(base)
        mtl += [f"map_Kd {name}"]
        if base.mode == "RGBA":
            mtl += [f"map_d -imfchan m {name}"]
    mr = getattr(material, "metallicRoughnessTexture", None)
    if mr is not None:
        rgb = np.asarray(mr.convert("RGB"))
        files[f"{stem}_roughness.png"] = _png(Image.fromarray(rgb[..., 1]))
        files[f"{stem}_metallic.png"] = _png(Image.fromarray(rgb[..., 2]))
        mtl += [f"map_Pr {stem}_roughness.png", f"map_Pm {stem}_metallic.png"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}.obj", text.getvalue())
        archive.writestr(f"{stem}.mtl", "\n".join(mtl) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def export_asset(mesh: trimesh.Trimesh, out_dir: str | os.PathLike, stem: str, fmt: str = "glb") -> Path:
    """Write `mesh` as `<out_dir>/<stem>.<ext>` and return the path.

    `fmt`: 'glb' (textured, binary glTF 2.0), 'obj' (a .zip with .obj + .mtl + PNG textures), 'stl' (geometry
    only, binary) or 'ply' (geometry + normals, binary). The file appears only once it is complete.
    """
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unsupported export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError("nothing to export: the mesh has no faces")
    stem = _slug(stem)
    if fmt == "glb":
        data = mesh.export(file_type="glb")
        path = Path(out_dir) / f"{stem}.glb"
    elif fmt == "obj":
        data = _obj_zip(mesh, stem)
        path = Path(out_dir) / f"{stem}.zip"
    elif fmt == "stl":
        data = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="stl")
        path = Path(out_dir) / f"{stem}.stl"
    else:
        plain = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.vertex_normals, process=False)
        data = plain.export(file_type="ply", encoding="binary", include_attributes=True)
        path = Path(out_dir) / f"{stem}.ply"
    _write_atomic(path, data if isinstance(data, bytes) else data.encode())
    return path
