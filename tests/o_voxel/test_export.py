"""Artist exports: file names, GLB / OBJ zip / STL / PLY contents, orientation, alpha modes, errors."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
import trimesh
from ov_gltf_validator import assert_valid_glb
from PIL import Image

from o_voxel.export import asset_file_name, export_asset, resolve_alpha_mode


def _textured(alpha: np.ndarray | None = None) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.4, 0.3, 0.2))  # Y-up: 0.3 tall
    rng = np.random.default_rng(0)
    uv = rng.random((len(box.vertices), 2))
    rgba = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255 if alpha is None else alpha
    mr = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(rgba, "RGBA"),
        metallicRoughnessTexture=mr,
        metallicFactor=1.0,
        roughnessFactor=1.0,
        alphaMode="BLEND",
    )
    return trimesh.Trimesh(
        box.vertices, box.faces, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, material=material)
    )


@pytest.fixture(scope="module")
def textured_mesh() -> trimesh.Trimesh:
    return _textured(alpha=np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))


def glb_json(path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def test_asset_file_name():
    assert asset_file_name("chair", "trellis2", 42, "a1b2", "glb") == "chair_trellis2_seed42_a1b2.glb"
    assert asset_file_name("my chair/v2", "fresnel", 7, "id", ".STL") == "my-chair-v2_fresnel_seed7_id.stl"
    assert asset_file_name("x", "e", 1, "j", "obj").endswith(".zip")


def test_glb_names_sampler_no_extensions(tmp_path, textured_mesh):
    path = export_asset(textured_mesh, tmp_path, "asset", "glb", name="genesis_chair")
    assert path.name == "asset.glb" and path.read_bytes()[:4] == b"glTF"
    assert_valid_glb(path)
    assert not list(tmp_path.glob("*.part"))
    gltf = glb_json(path)
    assert "extensionsUsed" not in gltf and "extensionsRequired" not in gltf
    for key in ("materials", "textures", "images", "samplers", "meshes", "nodes"):
        assert all(item["name"].startswith("genesis_chair") for item in gltf[key]), key
    (sampler,) = gltf["samplers"]
    assert sampler["minFilter"] == 9987 and sampler["magFilter"] == 9729  # LINEAR_MIPMAP_LINEAR / LINEAR
    assert {t["sampler"] for t in gltf["textures"]} == {0}
    assert gltf["materials"][0]["alphaMode"] == "BLEND"
    reloaded = trimesh.load(path, force="mesh", process=False)
    np.testing.assert_allclose(reloaded.bounds, textured_mesh.bounds, atol=1e-6)
    np.testing.assert_allclose(reloaded.visual.uv, textured_mesh.visual.uv, atol=1e-6)


def test_alpha_modes(tmp_path):
    solid = _textured()
    transparent = _textured(
        alpha=np.where(np.arange(64)[:, None] < 32, 40, 255).repeat(64, 1).astype(np.uint8)
    )
    modes = {}
    for label, mesh, mode in [
        ("solid", solid, "auto"),
        ("see", transparent, "auto"),
        ("cut", transparent, "MASK"),
    ]:
        path = export_asset(mesh, tmp_path, label, "glb", alpha_mode=mode, alpha_cutoff=0.3)
        assert_valid_glb(path)
        modes[label] = glb_json(path)["materials"][0]
    assert "alphaMode" not in modes["solid"]  # glTF default: OPAQUE
    assert modes["see"]["alphaMode"] == "BLEND"
    assert modes["cut"]["alphaMode"] == "MASK" and modes["cut"]["alphaCutoff"] == pytest.approx(0.3)
    assert resolve_alpha_mode("auto", np.full(10, 255)) == "OPAQUE"
    assert resolve_alpha_mode("auto", np.array([255, 12])) == "BLEND"
    assert resolve_alpha_mode("blend") == "BLEND"
    with pytest.raises(ValueError, match="alpha_mode"):
        resolve_alpha_mode("transparent")
    with pytest.raises(ValueError, match="alpha_cutoff"):
        resolve_alpha_mode("MASK", None, 1.5)


def test_obj_zip(tmp_path, textured_mesh):
    path = export_asset(textured_mesh, tmp_path, "asset", "obj")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        obj = archive.read("asset.obj").decode()
        mtl = archive.read("asset.mtl").decode()
        images = {n: np.asarray(Image.open(io.BytesIO(archive.read(n)))) for n in names if n.endswith(".png")}
    mr = np.asarray(textured_mesh.visual.material.metallicRoughnessTexture)
    assert obj.startswith("mtllib asset.mtl\n")
    maps = dict(line.split(" ", 1) for line in mtl.splitlines() if line.startswith("map_"))
    assert maps["map_Kd"] == "asset_basecolor.png" and maps["map_d"] == "asset_alpha.png"
    assert maps["map_Pm"] != maps["map_Pr"] and {maps["map_Pm"], maps["map_Pr"]} <= names
    # separate single-channel (non-colour) images, referenced from the MTL
    assert images[maps["map_Pm"]].ndim == 2 and images[maps["map_Pr"]].ndim == 2
    np.testing.assert_array_equal(images[maps["map_Pm"]], mr[..., 2])
    np.testing.assert_array_equal(images[maps["map_Pr"]], mr[..., 1])
    np.testing.assert_array_equal(images["asset_metallicRoughness.png"], mr)  # glTF-style combined map
    assert obj.count("\nv ") == len(textured_mesh.vertices)
    assert obj.count("\nvt ") == len(textured_mesh.vertices)
    assert obj.count("\nf ") == len(textured_mesh.faces)
    loaded = trimesh.load(io.BytesIO(obj.encode()), file_type="obj", process=False, force="mesh")
    assert len(loaded.faces) == len(textured_mesh.faces)
    np.testing.assert_allclose(loaded.bounds, textured_mesh.bounds, atol=1e-5)  # OBJ stays Y-up


def _z_up_bounds(bounds: np.ndarray) -> np.ndarray:
    """glTF Y-up bounds -> Z-up bounds under (x, y, z) -> (x, -z, y)."""
    lo, hi = bounds
    return np.array([[lo[0], -hi[2], lo[1]], [hi[0], -lo[2], hi[1]]])


@pytest.mark.parametrize("fmt", ["stl", "ply"])
def test_geometry_formats_are_z_up(tmp_path, textured_mesh, fmt):
    path = export_asset(textured_mesh, tmp_path, "asset", fmt)
    assert path.suffix == f".{fmt}"
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.faces) == len(textured_mesh.faces)
    np.testing.assert_allclose(loaded.bounds, _z_up_bounds(textured_mesh.bounds), atol=1e-6)
    # a rotation, not a mirror: winding still agrees with the outward normals
    assert loaded.volume > 0
    kept = trimesh.load(
        export_asset(textured_mesh, tmp_path, "y", fmt, up_axis="y"), process=False, force="mesh"
    )
    np.testing.assert_allclose(kept.bounds, textured_mesh.bounds, atol=1e-6)


def test_ply_has_colours_and_normals(tmp_path):
    box = trimesh.creation.box(extents=(0.4, 0.3, 0.2))
    colours = np.random.default_rng(2).integers(0, 255, (len(box.vertices), 4), dtype=np.uint8)
    mesh = trimesh.Trimesh(box.vertices, box.faces, vertex_colors=colours, process=False)
    path = export_asset(mesh, tmp_path, "asset", "ply")
    header = path.read_bytes().split(b"end_header")[0].decode()
    for prop in ("nx", "ny", "nz", "red", "green", "blue", "alpha"):
        assert f" {prop}\n" in header
    loaded = trimesh.load(path, process=False)
    np.testing.assert_array_equal(loaded.visual.vertex_colors, colours)


def test_errors(tmp_path, textured_mesh):
    with pytest.raises(ValueError, match="unsupported export format"):
        export_asset(textured_mesh, tmp_path, "asset", "fbx")
    with pytest.raises(ValueError, match="no faces"):
        export_asset(trimesh.Trimesh(), tmp_path, "asset", "glb")
    with pytest.raises(ValueError, match="up_axis"):
        export_asset(textured_mesh, tmp_path, "asset", "glb", up_axis="z")
    assert not list(tmp_path.iterdir())
