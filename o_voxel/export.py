"""Asset files for artists: GLB (default), OBJ + MTL + PNG textures (zipped), STL, PLY; written atomically."""

from __future__ import annotations

import io
import json
import os
import re
import struct
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
    ext = (
        EXPORT_FORMATS[ext].extension if ext in EXPORT_FORMATS else ext
    )  # OBJ: a zip of obj + mtl + textures
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


ALPHA_MODES = ("auto", "OPAQUE", "MASK", "BLEND")
SOLID_ALPHA = 250  # alpha bytes at or above this count as solid for alpha_mode="auto"
UP_AXES = {"glb": ("y",), "obj": ("y", "z"), "stl": ("z", "y"), "ply": ("z", "y")}  # first = the default
_Y_TO_Z = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # glTF (x, y, z) -> (x, -z, y)


def resolve_alpha_mode(alpha_mode: str, alpha: np.ndarray | None = None, alpha_cutoff: float = 0.5) -> str:
    """The glTF alpha mode to write: 'OPAQUE', 'MASK' or 'BLEND'.

    `alpha_mode` 'auto' picks OPAQUE when every alpha byte (`alpha`, any shape; None = no alpha) is at least
    `SOLID_ALPHA`, else BLEND; 'OPAQUE' / 'MASK' / 'BLEND' (any case) are taken as given. `alpha_cutoff` (the
    MASK threshold) must lie in [0, 1]. Raises ValueError otherwise.
    """
    mode = str(alpha_mode).upper() if str(alpha_mode).lower() != "auto" else "auto"
    if mode not in ALPHA_MODES:
        raise ValueError(f"alpha_mode must be one of {', '.join(ALPHA_MODES)}, got {alpha_mode!r}")
    if not 0.0 <= float(alpha_cutoff) <= 1.0:
        raise ValueError(f"alpha_cutoff must lie in [0, 1], got {alpha_cutoff}")
    if mode != "auto":
        return mode
    solid = alpha is None or np.size(alpha) == 0 or int(np.min(alpha)) >= SOLID_ALPHA
    return "OPAQUE" if solid else "BLEND"


def _material(mesh: trimesh.Trimesh):
    return getattr(getattr(mesh, "visual", None), "material", None)


def _uv(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Trimesh (v-up, OBJ-style) UVs when the mesh has one per vertex."""
    uv = getattr(mesh.visual, "uv", None) if isinstance(mesh.visual, trimesh.visual.TextureVisuals) else None
    return None if uv is None or len(uv) != len(mesh.vertices) else np.asarray(uv, dtype=np.float64)


def _unit_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    n = np.asarray(mesh.vertex_normals, dtype=np.float64)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))


def _vertex_colours(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """RGBA uint8 per vertex: stored vertex colours, or the base colour texture sampled at the UVs."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals):
        if visual.kind == "vertex":
            return np.asarray(visual.vertex_colors, dtype=np.uint8)
        return None
    material, uv = _material(mesh), _uv(mesh)
    image = getattr(material, "baseColorTexture", None)
    if image is None or uv is None:
        return None
    data = np.asarray(image.convert("RGBA"))
    h, w = data.shape[:2]
    col = np.clip(np.floor(uv[:, 0] * w), 0, w - 1).astype(np.int64)
    row = np.clip(np.floor((1.0 - uv[:, 1]) * h), 0, h - 1).astype(np.int64)
    return data[row, col]


def _with_alpha_mode(
    mesh: trimesh.Trimesh, alpha_mode: str | None, alpha_cutoff: float | None
) -> trimesh.Trimesh:
    """A shallow copy of a textured mesh whose material uses the requested alpha mode (None keeps it)."""
    material = _material(mesh)
    if alpha_mode is None or not isinstance(material, trimesh.visual.material.PBRMaterial):
        return mesh
    base = material.baseColorTexture
    cutoff = 0.5 if alpha_cutoff is None else float(alpha_cutoff)
    alpha = np.asarray(base)[..., 3] if base is not None and base.mode == "RGBA" else None
    mode = resolve_alpha_mode(alpha_mode, alpha, cutoff)
    new = material.copy()
    new.alphaMode = mode
    new.alphaCutoff = cutoff if mode == "MASK" else None
    if base is not None:
        new.baseColorTexture = base.convert("RGB") if mode == "OPAQUE" else base.convert("RGBA")
    out = mesh.copy()
    out.visual = trimesh.visual.TextureVisuals(uv=getattr(mesh.visual, "uv", None), material=new)
    return out


def _obj_zip(mesh: trimesh.Trimesh, stem: str, name: str, vertices: np.ndarray, normals: np.ndarray) -> bytes:
    """OBJ (positions, UVs, normals, `mtllib`) + MTL with the maps Blender's importer reads + PNGs, zipped.

    Base colour `map_Kd` (sRGB), metallic `map_Pm` and roughness `map_Pr` as separate greyscale (non-colour)
    images, alpha `map_d` when the material is not opaque; the glTF-style combined metallic-roughness image
    (`<stem>_metallicRoughness.png`: G roughness, B metallic) is included for tools that take glTF maps.
    """
    material = _material(mesh)
    uv = _uv(mesh)
    faces = np.asarray(mesh.faces, dtype=np.int64) + 1
    text = io.StringIO()
    text.write(f"mtllib {stem}.mtl\no {name}\n")
    np.savetxt(text, vertices, fmt="v %.6f %.6f %.6f")
    if uv is not None:
        np.savetxt(text, uv, fmt="vt %.6f %.6f")
    np.savetxt(text, normals, fmt="vn %.6f %.6f %.6f")
    text.write(f"usemtl {name}\n")
    corner = "%d/%d/%d" if uv is not None else "%d//%d"
    per_corner = 3 if uv is not None else 2
    np.savetxt(text, np.repeat(faces, per_corner, axis=1), fmt=f"f {corner} {corner} {corner}")
    metallic = float(getattr(material, "metallicFactor", None) or 0.0)
    roughness = getattr(material, "roughnessFactor", None)
    roughness = 1.0 if roughness is None else float(roughness)
    mtl = [
        f"newmtl {name}",
        "Ka 1.000 1.000 1.000",
        "Kd 1.000 1.000 1.000",
        "Ks 0.000 0.000 0.000",
        f"Pm {metallic:.3f}",
        f"Pr {roughness:.3f}",
        "d 1.000",
        "illum 2",
    ]
    files: dict[str, bytes] = {}
    base = getattr(material, "baseColorTexture", None)
    if base is not None:
        files[f"{stem}_basecolor.png"] = _png(base.convert("RGB"))
        mtl += [f"map_Kd {stem}_basecolor.png"]
        if base.mode == "RGBA" and getattr(material, "alphaMode", "OPAQUE") in ("MASK", "BLEND"):
            files[f"{stem}_alpha.png"] = _png(base.getchannel("A"))
            mtl += [f"map_d {stem}_alpha.png"]
    mr = getattr(material, "metallicRoughnessTexture", None)
    if mr is not None:
        rgb = np.asarray(mr.convert("RGB"))
        files[f"{stem}_metallic.png"] = _png(Image.fromarray(np.ascontiguousarray(rgb[..., 2])))
        files[f"{stem}_roughness.png"] = _png(Image.fromarray(np.ascontiguousarray(rgb[..., 1])))
        files[f"{stem}_metallicRoughness.png"] = _png(mr.convert("RGB"))
        mtl += [f"map_Pm {stem}_metallic.png", f"map_Pr {stem}_roughness.png"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}.obj", text.getvalue())
        archive.writestr(f"{stem}.mtl", "\n".join(mtl) + "\n")
        for file_name, data in files.items():
            archive.writestr(file_name, data)
    return buffer.getvalue()


def _ply(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, colours: np.ndarray | None) -> bytes:
    """Binary little-endian PLY: float positions and normals, uchar RGBA colours (if any), int faces."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if colours is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    rows = np.empty(len(vertices), dtype=fields)
    for k, axis in enumerate("xyz"):
        rows[axis] = vertices[:, k]
        rows[f"n{axis}"] = normals[:, k]
    if colours is not None:
        for k, channel in enumerate(("red", "green", "blue", "alpha")):
            rows[channel] = colours[:, k]
    tris = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    tris["n"], tris["idx"] = 3, faces
    kind = {"<f4": "float", "u1": "uchar"}
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment Genesis O-Voxel export (z-up unless asked)",
        f"element vertex {len(vertices)}",
    ]
    header += [f"property {kind[t]} {n}" for n, t in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    return ("\n".join(header) + "\n").encode() + rows.tobytes() + tris.tobytes()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _glb(mesh: trimesh.Trimesh, name: str) -> bytes:
    """Binary glTF 2.0 of one mesh: POSITION, NORMAL, TEXCOORD_0 / COLOR_0, uint32 indices, a PBR material.

    Everything is named after `name` (material, textures, images, sampler, mesh, node, scene); one sampler
    with trilinear (mipmapped) filtering and clamped wrapping serves every texture; no extension is used.
    """
    chunks: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []
    offset = 0

    def view(data: bytes, target: int | None = None) -> int:
        nonlocal offset
        entry = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        pad = (-len(data)) % 4
        chunks.append(data + b"\0" * pad)
        offset += len(data) + pad
        views.append(entry)
        return len(views) - 1

    def accessor(
        array: np.ndarray, kind: str, component: int, target: int, bounds: bool = False, **extra
    ) -> int:
        entry = {
            "bufferView": view(np.ascontiguousarray(array).tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
            **extra,
        }
        if bounds:
            entry["min"] = array.min(0).astype(float).tolist()
            entry["max"] = array.max(0).astype(float).tolist()
        accessors.append(entry)
        return len(accessors) - 1

    positions = np.asarray(mesh.vertices, dtype=np.float32)
    attributes = {
        "POSITION": accessor(positions, "VEC3", 5126, _ARRAY_BUFFER, bounds=True),
        "NORMAL": accessor(_unit_normals(mesh).astype(np.float32), "VEC3", 5126, _ARRAY_BUFFER),
    }
    uv = _uv(mesh)
    if uv is not None:
        gl_uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1).astype(np.float32)  # glTF: v = 0 is the top row
        attributes["TEXCOORD_0"] = accessor(gl_uv, "VEC2", 5126, _ARRAY_BUFFER)
    elif (colours := _vertex_colours(mesh)) is not None:
        attributes["COLOR_0"] = accessor(colours, "VEC4", 5121, _ARRAY_BUFFER, normalized=True)
    faces = np.asarray(mesh.faces, dtype=np.uint32).reshape(-1)
    indices = accessor(faces, "SCALAR", 5125, _ELEMENT_ARRAY_BUFFER)

    material = _material(mesh)
    images: list[dict] = []
    textures: list[dict] = []
    pbr: dict = {}

    def texture(image: Image.Image, role: str) -> dict:
        images.append({"name": f"{name}_{role}", "mimeType": "image/png", "bufferView": view(_png(image))})
        textures.append({"name": f"{name}_{role}", "sampler": 0, "source": len(images) - 1})
        return {"index": len(textures) - 1}

    mat: dict = {"name": name}
    mode = "OPAQUE"
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        mode = (material.alphaMode or "OPAQUE").upper()
        base = material.baseColorTexture
        if base is not None and uv is not None:
            pbr["baseColorTexture"] = texture(
                base.convert("RGBA" if mode != "OPAQUE" else "RGB"), "basecolor"
            )
        mr = material.metallicRoughnessTexture
        if mr is not None and uv is not None:
            pbr["metallicRoughnessTexture"] = texture(mr.convert("RGB"), "metallicRoughness")
        factor = material.baseColorFactor
        if factor is not None:
            factor = np.asarray(factor, dtype=np.float64)
            factor = factor / 255.0 if factor.max() > 1.0 else factor
            if not np.allclose(factor, 1.0):
                pbr["baseColorFactor"] = [float(x) for x in np.clip(factor, 0, 1)]
        for key in ("metallicFactor", "roughnessFactor"):
            value = getattr(material, key)
            if value is not None:
                pbr[key] = float(np.clip(value, 0.0, 1.0))
        if material.doubleSided:
            mat["doubleSided"] = True
    mat["pbrMetallicRoughness"] = pbr
    if mode != "OPAQUE":
        mat["alphaMode"] = mode
        if mode == "MASK":
            cutoff = getattr(material, "alphaCutoff", None)
            mat["alphaCutoff"] = 0.5 if cutoff is None else float(cutoff)
    gltf: dict = {
        "asset": {"version": "2.0", "generator": "Genesis o_voxel"},
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [
            {
                "name": name,
                "primitives": [{"attributes": attributes, "indices": indices, "material": 0, "mode": 4}],
            }
        ],
        "materials": [mat],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    if textures:
        gltf["samplers"] = [
            {
                "name": f"{name}_sampler",
                "magFilter": _LINEAR,
                "minFilter": _LINEAR_MIPMAP_LINEAR,
                "wrapS": _CLAMP_TO_EDGE,
                "wrapT": _CLAMP_TO_EDGE,
            }
        ]
        gltf["textures"], gltf["images"] = textures, images
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 4)
    binary = b"".join(chunks)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return (
        struct.pack("<III", 0x46546C67, 2, total)
        + struct.pack("<II", len(text), 0x4E4F534A)
        + text
        + struct.pack("<II", len(binary), 0x004E4942)
        + binary
    )


def export_asset(
    mesh: trimesh.Trimesh,
    out_dir: str | os.PathLike,
    stem: str,
    fmt: str = "glb",
    *,
    name: str | None = None,
    up_axis: str | None = None,
    alpha_mode: str | None = None,
    alpha_cutoff: float | None = None,
) -> Path:
    """Write `mesh` (Y-up, as `to_glb` / `to_vertex_colored_mesh` return it) as `<out_dir>/<stem>.<ext>`.

    `fmt`: 'glb' (textured binary glTF 2.0, Y-up), 'obj' (a .zip with .obj + .mtl + PNG maps, Y-up), 'stl'
    (binary geometry) or 'ply' (binary, normals and RGBA vertex colours - stored ones, else sampled from the
    base colour texture). `up_axis`: None = the format's convention (GLB/OBJ 'y'; STL/PLY 'z', as Blender,
    slicers and CAD expect), or 'y' / 'z' where the format allows it. `name` names the material, textures,
    mesh and node (default: `mesh.metadata['name']`, else `genesis_<stem>`). `alpha_mode` None keeps the
    material's mode; 'auto' / 'OPAQUE' / 'MASK' / 'BLEND' re-decide it (`resolve_alpha_mode`), with
    `alpha_cutoff` for MASK. The file appears only once it is complete. Returns its path.
    """
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unsupported export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError("nothing to export: the mesh has no faces")
    up = UP_AXES[fmt][0] if up_axis is None else str(up_axis).lower()
    if up not in UP_AXES[fmt]:
        raise ValueError(
            f"up_axis {up_axis!r} is not available for {fmt}: choose one of {', '.join(UP_AXES[fmt])}"
        )
    stem = _slug(stem)
    name = str(name or mesh.metadata.get("name") or f"genesis_{stem}")
    mesh = _with_alpha_mode(mesh, alpha_mode, alpha_cutoff)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    normals = _unit_normals(mesh)
    if up == "z":
        vertices, normals = vertices @ _Y_TO_Z.T, normals @ _Y_TO_Z.T
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if fmt == "glb":
        data = _glb(mesh, name)
        path = Path(out_dir) / f"{stem}.glb"
    elif fmt == "obj":
        data = _obj_zip(mesh, stem, name, vertices, normals)
        path = Path(out_dir) / f"{stem}.zip"
    elif fmt == "stl":
        data = trimesh.Trimesh(vertices, faces, process=False).export(file_type="stl")
        path = Path(out_dir) / f"{stem}.stl"
    else:
        data = _ply(vertices, faces, normals, _vertex_colours(mesh))
        path = Path(out_dir) / f"{stem}.ply"
    _write_atomic(path, data if isinstance(data, bytes) else data.encode())
    return path
