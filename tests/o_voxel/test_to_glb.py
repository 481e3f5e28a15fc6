"""End to end: analytic PBR fields on voxelised shapes -> to_glb -> GLB file -> reload and read textures back."""

from __future__ import annotations

import json
import struct

import numpy as np
import ov_fields as fields
import ov_shapes as shapes
import pytest
import torch
import trimesh
from ov_gltf_validator import assert_valid_glb

from o_voxel.convert import flexible_dual_grid_to_mesh, mesh_to_flexible_dual_grid
from o_voxel.export import export_asset
from o_voxel.postprocess import to_glb

AABB = [[-0.5] * 3, [0.5] * 3]
RES = 64
TARGET = 3000


def _gltf_to_zup(points: np.ndarray) -> np.ndarray:
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1)


def glb_json(path) -> dict:
    """The JSON chunk of a GLB file."""
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20 : 20 + length])


def material_double_sided(mesh: trimesh.Trimesh) -> bool:
    return bool(mesh.visual.material.doubleSided)


def decoded_like(shape: str, res: int = RES):
    """A dense O-Voxel mesh of an analytic shape plus the analytic PBR field at its voxel centres."""
    mesh = getattr(shapes, shape)()
    coords, dual, flags = mesh_to_flexible_dual_grid(
        mesh.vertices,
        mesh.faces,
        grid_size=res,
        aabb=AABB,
        face_weight=1.0,
        boundary_weight=0.2,
        regularization_weight=1e-2,
    )
    vertices, faces = flexible_dual_grid_to_mesh(
        coords, dual * res - coords.float(), flags, None, AABB, grid_size=res
    )
    centres = (coords.double().numpy() + 0.5) / res - 0.5
    attrs = torch.from_numpy(fields.pbr_field(centres)).float()
    return mesh, vertices, faces, attrs, coords


@pytest.mark.parametrize(
    ("shape", "alpha_mode", "remesh", "res"),
    [
        ("sphere", "OPAQUE", False, RES),
        ("torus", "BLEND", False, RES),
        ("wavy_sheet", "OPAQUE", False, RES),
        ("sphere", "OPAQUE", True, 32),
    ],
)
def test_bake_export_reload_reads_back_the_field(tmp_path, shape, alpha_mode, remesh, res):
    source, vertices, faces, attrs, coords = decoded_like(shape, res)
    calls = []
    mesh = to_glb(
        vertices,
        faces,
        attrs,
        coords,
        fields.LAYOUT,
        AABB,
        grid_size=res,
        remesh=remesh,
        decimation_target=TARGET,
        texture_size=512,
        alpha_mode=alpha_mode,
        progress=lambda stage, step, total: calls.append((stage, step, total)),
    )
    assert [c[1] for c in calls] == list(range(0, calls[0][2] + 1))  # each step as it starts, then the end
    assert calls[0][0] == "fill holes" and calls[-1][1] == calls[-1][2]
    assert material_double_sided(mesh) == (not remesh)
    path = export_asset(mesh, tmp_path, f"{shape}_test", "glb")
    assert_valid_glb(path)
    gltf = glb_json(path)
    (primitive,) = gltf["meshes"][0]["primitives"]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(primitive["attributes"])
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" in pbr and "metallicRoughnessTexture" in pbr
    assert gltf["materials"][0].get("alphaMode", "OPAQUE") == alpha_mode

    loaded = trimesh.load(path, force="mesh", process=False)
    f = np.asarray(loaded.faces)
    v = np.asarray(loaded.vertices)
    uv_gl = np.asarray(loaded.visual.uv)
    assert 0 < len(f) <= TARGET
    # no degenerate faces, in 3D or in UV space
    assert loaded.area_faces.min() > 1e-12
    edges = np.linalg.norm(v[f] - v[np.roll(f, 1, axis=1)], axis=-1)
    assert edges.min() > 0
    uv_tri = uv_gl[f]
    d1, d2 = uv_tri[:, 1] - uv_tri[:, 0], uv_tri[:, 2] - uv_tri[:, 0]
    uv_area = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    assert uv_area.min() > 0
    assert uv_gl.min() >= 0 and uv_gl.max() <= 1
    normals = np.asarray(loaded.vertex_normals)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    # +Y up: mapping the GLB back with (x, y, z) -> (x, -z, y) lands on the Z-up source surface
    dist = shapes.point_to_mesh_distance(_gltf_to_zup(v), source) * res
    assert np.median(dist) < 0.5 and dist.max() < 2.5
    if shape == "wavy_sheet":  # the sheet is thin along Z, hence along glTF Y
        assert np.ptp(v[:, 1]) < 0.5 * min(np.ptp(v[:, 0]), np.ptp(v[:, 2]))

    # read the textures back through the UVs at random surface points
    points, face_idx = shapes.sample_surface(loaded, 4000, seed=3)
    bary = trimesh.triangles.points_to_barycentric(v[f[face_idx]], points)
    uv = (bary[:, :, None] * uv_gl[f[face_idx]]).sum(1)
    uv[:, 1] = 1 - uv[:, 1]  # trimesh's UVs are v-up; the glTF file and the image are v-down
    material = loaded.visual.material
    base = fields.bilinear(material.baseColorTexture, uv) / 255
    mr = fields.bilinear(material.metallicRoughnessTexture, uv) / 255
    expected = fields.pbr_field(_gltf_to_zup(points))
    errors = {
        "red": np.abs(base[:, 0] - expected[:, 0]).mean(),
        "green": np.abs(base[:, 1] - expected[:, 1]).mean(),
        "blue": np.abs(base[:, 2] - expected[:, 2]).mean(),
        "metallic": np.abs(mr[:, 2] - expected[:, 3]).mean(),
        "roughness": np.abs(mr[:, 1] - expected[:, 4]).mean(),
    }
    if alpha_mode == "BLEND":
        assert material.alphaMode == "BLEND" and base.shape[1] == 4
        errors["alpha"] = np.abs(base[:, 3] - expected[:, 5]).mean()
    else:
        assert material.alphaMode in (None, "OPAQUE")
    report = {k: round(float(e) * 255, 3) for k, e in errors.items()}
    print(f"{shape} remesh={remesh}: mean |error| per channel in 1/255 units: {report}")
    assert max(errors.values()) <= 2 / 255, report


@pytest.fixture(scope="module")
def small_input():
    _, vertices, faces, attrs, coords = decoded_like("sphere", res=24)
    return vertices, faces, attrs, coords


def _call(vertices, faces, attrs, coords, **kwargs):
    options = {"grid_size": 24, "decimation_target": 500, "texture_size": 512}
    options.update(kwargs)
    return to_glb(vertices, faces, attrs, coords, fields.LAYOUT, AABB, **options)


def test_bad_input_is_a_clear_error(small_input):
    vertices, faces, attrs, coords = small_input
    with pytest.raises(ValueError, match="empty"):
        _call(vertices[:0], faces[:0], attrs, coords)
    bad = vertices.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _call(bad, faces, attrs, coords)
    wrong = faces.clone()
    wrong[0, 0] = vertices.shape[0] + 5
    with pytest.raises(ValueError, match="out of range"):
        _call(vertices, wrong, attrs, coords)
    with pytest.raises(ValueError, match="no voxels"):
        _call(vertices, faces, attrs[:0], coords[:0])
    for size in (256, 1000, 8192):
        with pytest.raises(ValueError, match="unsupported texture size"):
            _call(vertices, faces, attrs, coords, texture_size=size)
    with pytest.raises(ValueError, match="alpha_mode"):
        _call(vertices, faces, attrs, coords, alpha_mode="TRANSLUCENT")
    with pytest.raises(ValueError, match="missing 'roughness'"):
        to_glb(
            vertices,
            faces,
            attrs,
            coords,
            {"base_color": slice(0, 3), "metallic": slice(3, 4), "alpha": slice(5, 6)},
            AABB,
            grid_size=24,
        )
    with pytest.raises(ValueError, match="4 voxels but coords has 3"):
        _call(vertices, faces, attrs[:4], coords[:3])
