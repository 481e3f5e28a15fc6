"""Textured mesh -> per-voxel PBR attributes: voxel set, texture lookups through UVs, material factors."""

from __future__ import annotations

import numpy as np
import ov_shapes as shapes
import pytest
import torch
import trimesh
from PIL import Image

from o_voxel.convert import mesh_to_flexible_dual_grid, textured_mesh_to_volumetric_attr

AABB = [[-0.5] * 3, [0.5] * 3]
RES = 48


def _textured_sheet(alpha_mode: str) -> trimesh.Trimesh:
    sheet = shapes.wavy_sheet(size=0.7, n=40)
    v = np.asarray(sheet.vertices)
    uv = np.stack([v[:, 0] / 0.7 + 0.5, v[:, 1] / 0.7 + 0.5], 1)
    cols = np.arange(256, dtype=np.uint8)
    rgba = np.zeros((256, 256, 4), dtype=np.uint8)
    rgba[..., 0] = cols[None, :]  # red grows with u
    rgba[..., 1] = cols[::-1, None]  # green grows with v (row 0 is v = 1)
    rgba[..., 2] = 128
    rgba[..., 3] = 200
    mr = np.zeros((256, 256, 3), dtype=np.uint8)
    mr[..., 1], mr[..., 2] = 100, 30
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(rgba, "RGBA"),
        baseColorFactor=[255, 255, 255, 255],
        metallicRoughnessTexture=Image.fromarray(mr, "RGB"),
        metallicFactor=0.5,
        roughnessFactor=1.0,
        alphaMode=alpha_mode,
    )
    return trimesh.Trimesh(
        v, sheet.faces, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, material=material)
    )


@pytest.mark.parametrize("alpha_mode", ["OPAQUE", "BLEND"])
def test_sheet_texture_is_read_through_the_uvs(alpha_mode):
    mesh = _textured_sheet(alpha_mode)
    coords, attrs = textured_mesh_to_volumetric_attr(mesh, grid_size=RES, aabb=AABB)
    geo_coords, _, _ = mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, grid_size=RES, aabb=AABB)
    assert torch.equal(coords, geo_coords)  # the attribute voxels are the geometry voxels
    assert set(attrs) == {"base_color", "metallic", "roughness", "alpha", "emissive", "normal"}
    assert all(a.dtype == torch.uint8 and a.shape[0] == coords.shape[0] for a in attrs.values())
    centre = (coords.double() + 0.5) / RES - 0.5
    inner = (centre[:, 0].abs() < 0.3) & (centre[:, 1].abs() < 0.3)  # away from the REPEAT wrap at the border
    u = centre[inner, 0] / 0.7 + 0.5
    v = centre[inner, 1] / 0.7 + 0.5
    red = attrs["base_color"][inner, 0].double()
    green = attrs["base_color"][inner, 1].double()
    assert (red - (u * 256 - 0.5)).abs().max() <= 3
    assert (green - (v * 256 - 0.5)).abs().max() <= 3
    assert (attrs["base_color"][:, 2].double() - 128).abs().max() <= 1
    assert (attrs["roughness"].double() - 100).abs().max() <= 1
    assert (attrs["metallic"].double() - 15).abs().max() <= 1  # B channel times metallicFactor 0.5
    expected_alpha = 255 if alpha_mode == "OPAQUE" else 200
    assert (attrs["alpha"].double() - expected_alpha).abs().max() <= 1
    assert int(attrs["emissive"].max()) == 0
    normal = attrs["normal"].double() / 255 * 2 - 1
    assert (normal.norm(dim=1) - 1).abs().max() < 0.05


def test_errors():
    plain = shapes.sphere(subdivisions=2)
    with pytest.raises(ValueError, match="no texture"):
        textured_mesh_to_volumetric_attr(plain, grid_size=16, aabb=AABB)
    with pytest.raises(ValueError, match="empty"):
        textured_mesh_to_volumetric_attr(trimesh.Scene(), grid_size=16, aabb=AABB)
    with pytest.raises(ValueError, match="expected a file path"):
        textured_mesh_to_volumetric_attr(42, grid_size=16, aabb=AABB)
