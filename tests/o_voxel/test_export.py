"""Artist exports: file names, GLB / OBJ zip / STL / PLY contents, atomic writes, errors."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import trimesh
from ov_gltf_validator import assert_valid_glb
from PIL import Image

from o_voxel.export import asset_file_name, export_asset


@pytest.fixture(scope="module")
def textured_mesh() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.4, 0.3, 0.2))
    rng = np.random.default_rng(0)
    uv = rng.random((len(box.vertices), 2))
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), "RGBA")
    mr = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=base, metallicRoughnessTexture=mr, metallicFactor=1.0, roughnessFactor=1.0, alphaMode="BLEND"
    )
    return trimesh.Trimesh(
        box.vertices, box.faces, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, material=material)
    )


def test_asset_file_name():
    assert asset_file_name("chair", "trellis2", 42, "a1b2", "glb") == "chair_trellis2_seed42_a1b2.glb"
    assert asset_file_name("my chair/v2", "fresnel", 7, "id", ".STL") == "my-chair-v2_fresnel_seed7_id.stl"
    assert asset_file_name("x", "e", 1, "j", "obj").endswith(".zip")


def test_glb(tmp_path, textured_mesh):
    path = export_asset(textured_mesh, tmp_path, "asset", "glb")
    assert path.name == "asset.glb" and path.read_bytes()[:4] == b"glTF"
    assert_valid_glb(path)
    assert not list(tmp_path.glob("*.part"))


def test_obj_zip(tmp_path, textured_mesh):
    path = export_asset(textured_mesh, tmp_path, "asset", "obj")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"asset.obj", "asset.mtl", "asset_basecolor.png", "asset_metallic.png", "asset_roughness.png"} <= names
        obj = archive.read("asset.obj").decode()
        mtl = archive.read("asset.mtl").decode()
        mr = np.asarray(textured_mesh.visual.material.metallicRoughnessTexture)
        metallic = np.asarray(Image.open(io.BytesIO(archive.read("asset_metallic.png"))))
        np.testing.assert_array_equal(metallic, mr[..., 2])
    assert obj.count("\nv ") == len(textured_mesh.vertices)
    assert obj.count("\nvt ") == len(textured_mesh.vertices)
    assert obj.count("\nf ") == len(textured_mesh.faces)
    assert "map_Kd asset_basecolor.png" in mtl
    loaded = trimesh.load(io.BytesIO(obj.encode()), file_type="obj", process=False, force="mesh")
    assert len(loaded.faces) == len(textured_mesh.faces)


@pytest.mark.parametrize("fmt", ["stl", "ply"])
def test_geometry_formats(tmp_path, textured_mesh, fmt):
    path = export_asset(textured_mesh, tmp_path, "asset", fmt)
    assert path.suffix == f".{fmt}"
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.faces) == len(textured_mesh.faces)
    np.testing.assert_allclose(loaded.bounds, textured_mesh.bounds, atol=1e-6)


def test_errors(tmp_path, textured_mesh):
    with pytest.raises(ValueError, match="unsupported export format"):
        export_asset(textured_mesh, tmp_path, "asset", "fbx")
    with pytest.raises(ValueError, match="no faces"):
        export_asset(trimesh.Trimesh(), tmp_path, "asset", "glb")
    assert not list(tmp_path.iterdir())
