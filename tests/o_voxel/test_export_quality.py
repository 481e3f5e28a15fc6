"""Issue 12: sliver faces own their texels, clean topology out of to_glb, upright STL/PLY, alpha, names."""

from __future__ import annotations

import json
import struct

import numpy as np
import ov_fields as fields
import pytest
import torch
import trimesh
from ov_gltf_validator import assert_valid_glb
from test_to_glb import AABB, decoded_like

import cumesh as cm
from o_voxel.attributes import SparseVoxelGrid
from o_voxel.bake import atlas_pack_options, bake_attribute_textures
from o_voxel.export import export_asset
from o_voxel.postprocess import to_glb, to_vertex_colored_mesh


def glb_json(path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def zigzag_with_slivers(panels: int = 8, rows: int = 24, sliver: float = 2e-4):
    """A zig-zag sheet (steep panels alternate facing +x / -x, so each is its own chart) whose panels start and
    end with a column of sliver faces `sliver` wide (about a tenth of a texel at 512)."""
    width = 0.8 / panels
    xs = []
    for k in range(panels):
        a = -0.4 + k * width
        xs += [a, a + sliver, a + width / 3, a + 2 * width / 3, a + width - sliver]
    xs = np.array(xs + [0.4])
    z = 0.25 * (np.abs(((xs + 0.4) / width) % 2 - 1) - 0.5)  # slope 0.5 / width: steeper than 54.7 degrees
    ys = np.linspace(-0.3, 0.3, rows)
    verts = np.stack(np.broadcast_arrays(xs[:, None], ys[None, :], z[:, None]), -1).reshape(-1, 3)
    idx = np.arange(len(xs) * rows).reshape(len(xs), rows)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64)


def test_every_sliver_face_bakes_its_own_colour():
    v, f = zigzag_with_slivers()
    size = 512
    v2, f2, uvs, _ = cm.uv_unwrap(v, f, pack_charts_kwargs=atlas_pack_options(size), texture_size=size)
    assert f2.shape[0] == f.shape[0]
    # dense voxels around the sheet carrying the analytic field
    res = 64
    g = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (g.double() + 0.5) / res - 0.5
    near = cm.MeshBVH(v, f).within_distance(centres.float(), 2.5 / res)
    coords = g[near]
    feats = torch.from_numpy(fields.pbr_field(centres[near].numpy())).float()
    baked = bake_attribute_textures(
        v2,
        f2,
        uvs,
        size,
        None,
        None,
        feats,
        SparseVoxelGrid(coords, [res] * 3),
        torch.tensor(AABB[0]),
        torch.full((3,), 1.0 / res),
        fields.LAYOUT,
    )
    # mean colour of every face read back through its UVs (bilinear), against the analytic field
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 32)  # (32, 3) points per face
    tri_uv, tri_p = uvs.double().numpy()[f2.numpy()], v2.double().numpy()[f2.numpy()]
    uv = np.einsum("sk,fkd->fsd", w, tri_uv).reshape(-1, 2)
    pts = np.einsum("sk,fkd->fsd", w, tri_p).reshape(-1, 3)
    got = fields.bilinear(baked.base_color, uv).reshape(len(f2), -1, 3).mean(1) / 255
    want = fields.pbr_field(pts)[:, :3].reshape(len(f2), -1, 3).mean(1)
    err = np.abs(got - want).max(1)
    p = tri_p
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    longest = np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2).max(1)
    thin = 2 * area / longest < 1.0 / size  # narrower than a texel (UV scale ~ world scale here)
    assert thin.sum() >= 100
    worst = int(np.argmax(err))
    assert err.max() <= 4 / 255, f"face {worst} (thin: {thin[worst]}) off by {err.max() * 255:.1f}/255"


@pytest.fixture(scope="module")
def t_junction_input():
    return decoded_like("t_junction", res=40)


@pytest.fixture(scope="module")
def t_junction_glb(t_junction_input):
    _, vertices, faces, attrs, coords = t_junction_input
    return to_glb(
        vertices,
        faces,
        attrs,
        coords,
        fields.LAYOUT,
        AABB,
        grid_size=40,
        remesh=True,
        decimation_target=2500,
        texture_size=512,
        name="genesis_tjunction",
    )


def test_to_glb_output_has_clean_topology_and_names(tmp_path, t_junction_glb):
    mesh = t_junction_glb
    v = torch.tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    f = torch.tensor(np.asarray(mesh.faces), dtype=torch.int64)
    n = torch.tensor(np.asarray(mesh.vertex_normals), dtype=torch.float32)
    report = cm.check_topology(v, f, n)
    assert report.clean, report
    path = export_asset(mesh, tmp_path, "tj", "glb")
    assert_valid_glb(path)
    gltf = glb_json(path)
    assert gltf["materials"][0]["alphaMode"] == "BLEND"  # the field's alpha is 0.65-0.95: auto picks BLEND
    assert gltf["meshes"][0]["name"] == gltf["nodes"][0]["name"] == "genesis_tjunction"
    assert all(t["name"].startswith("genesis_tjunction") for t in gltf["textures"] + gltf["samplers"])
    assert "extensionsUsed" not in gltf


def test_alpha_auto_opaque_and_mask(tmp_path):
    _, vertices, faces, attrs, coords = decoded_like("sphere", res=24)
    solid = attrs.clone()
    solid[:, 5] = 1.0
    kw = {"grid_size": 24, "decimation_target": 600, "texture_size": 512}
    opaque = to_glb(vertices, faces, solid, coords, fields.LAYOUT, AABB, **kw)
    assert opaque.visual.material.alphaMode == "OPAQUE"
    assert opaque.visual.material.baseColorTexture.mode == "RGB"
    masked = to_glb(
        vertices, faces, attrs, coords, fields.LAYOUT, AABB, alpha_mode="MASK", alpha_cutoff=0.7, **kw
    )
    assert masked.visual.material.alphaMode == "MASK"
    paths = [export_asset(m, tmp_path, k, "glb") for k, m in (("opaque", opaque), ("mask", masked))]
    assert_valid_glb(*paths)
    materials = [glb_json(p)["materials"][0] for p in paths]
    assert "alphaMode" not in materials[0]
    assert materials[1]["alphaMode"] == "MASK" and materials[1]["alphaCutoff"] == pytest.approx(0.7)


def test_stl_and_ply_stand_upright_like_the_glb(tmp_path, t_junction_input, t_junction_glb):
    _, vertices, faces, attrs, coords = t_junction_input
    coloured = to_vertex_colored_mesh(
        vertices, faces, attrs, coords, fields.LAYOUT, AABB, grid_size=40, remesh=True, decimation_target=2500
    )
    cm.check_topology(
        torch.tensor(np.asarray(coloured.vertices), dtype=torch.float32),
        torch.tensor(np.asarray(coloured.faces)),
        torch.tensor(np.asarray(coloured.vertex_normals), dtype=torch.float32),
    ).raise_if_defective()
    glb = trimesh.load(export_asset(t_junction_glb, tmp_path, "m", "glb"), force="mesh", process=False)
    glb_extent = np.ptp(np.asarray(glb.vertices), axis=0)  # (x, y = up, z)
    for fmt in ("stl", "ply"):
        loaded = trimesh.load(export_asset(coloured, tmp_path, "m", fmt), force="mesh", process=False)
        extent = np.ptp(np.asarray(loaded.vertices), axis=0)  # (x, y, z = up)
        np.testing.assert_allclose(extent[[0, 2, 1]], glb_extent, atol=0.03)
        assert extent[2] > 0.3 and abs(extent[2] - extent[1]) > 0.05  # the T's stem stands up
    ply = trimesh.load(tmp_path / "m.ply", process=False)
    colours = np.asarray(ply.visual.vertex_colors)[:, :3] / 255.0
    up = np.asarray(ply.vertices)
    want = fields.pbr_field(up)[:, :3]  # the PLY is in the Z-up frame of the field
    assert np.abs(colours - want).mean() < 3 / 255
