"""mesh -> flexible dual grid: golden case 10, round trips on analytic shapes, input errors."""

from __future__ import annotations

import numpy as np
import ov_shapes as shapes
import pytest
import torch
import trimesh
from safetensors.numpy import load_file

from o_voxel.convert import flexible_dual_grid_to_mesh, mesh_to_flexible_dual_grid
from tests.golden_utils import assert_golden_close

AABB = [[-0.5] * 3, [0.5] * 3]
TRAINING_WEIGHTS = {"face_weight": 1.0, "boundary_weight": 0.2, "regularization_weight": 1e-2}


def _sorted(coords: np.ndarray, *rows: np.ndarray, res: int):
    order = np.argsort((coords[:, 0].astype(np.int64) * res + coords[:, 1]) * res + coords[:, 2])
    return (coords[order], *(r[order] for r in rows))


def test_golden_case10_voxels_flags_and_dual_vertices(golden_dir):
    """Voxel set, edge flags and dual vertices match the official converter (compared as sets sorted by xyz).

    The golden `dual_vertices` are the converter's raw output, i.e. absolute positions relative to `aabb_min`
    in world units (spec section 1.2 (a)), not voxel-unit offsets: with grid 32 and aabb [-0.5, 0.5]^3 both lie
    in [0, 1], which is easy to misread. Read as offsets they would sit ~0.4 voxel off the input surface.
    """
    g = load_file(str(golden_dir / "case10_dual_grid" / "case10_io.safetensors"))
    res = int(g["grid_size"][0])
    coords, dual, flags = mesh_to_flexible_dual_grid(
        torch.from_numpy(g["mesh_vertices"]),
        torch.from_numpy(g["mesh_faces"]),
        grid_size=res,
        aabb=g["aabb"],
        face_weight=1.0,
        boundary_weight=1.0,
        regularization_weight=0.1,
    )
    assert coords.dtype == torch.int32 and dual.dtype == torch.float32 and flags.dtype == torch.bool
    ours_c, ours_f = coords.numpy(), flags.numpy()
    gold_c, gold_f, gold_d = _sorted(g["coords"], g["intersected"], g["dual_vertices"], res=res)
    np.testing.assert_array_equal(ours_c, gold_c)
    np.testing.assert_array_equal(ours_f, gold_f)
    assert_golden_close(dual, gold_d, name="case10 dual_vertices")
    offset = dual.numpy() * res - ours_c  # converter output is absolute (relative to aabb_min)
    assert offset.min() >= -1e-5 and offset.max() <= 1 + 1e-5


def test_dual_vertices_lie_on_the_input_surface():
    mesh = shapes.torus()
    res = 64
    coords, dual, _ = mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, grid_size=res, aabb=AABB)
    points = dual.numpy() + np.asarray(AABB[0])
    dist = shapes.point_to_mesh_distance(points, mesh) * res
    assert np.median(dist) < 0.05 and dist.max() < 0.5


@pytest.mark.parametrize(
    ("shape", "res"),
    [("sphere", 256), ("torus", 128), ("wavy_sheet", 96), ("t_junction", 64), ("t_junction", 128)],
)
def test_round_trip_chamfer_below_half_a_voxel(shape, res):
    mesh = getattr(shapes, shape)()
    coords, dual, flags = mesh_to_flexible_dual_grid(
        mesh.vertices, mesh.faces, grid_size=res, aabb=AABB, **TRAINING_WEIGHTS
    )
    offsets = dual * res - coords.float()
    v, f = flexible_dual_grid_to_mesh(coords, offsets, flags, None, AABB, grid_size=res)
    out = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert len(out.faces) > 100
    mean, worst = shapes.chamfer(mesh, out, count=4000)
    assert mean * res <= 0.5, f"Chamfer {mean * res:.3f} voxels"
    assert worst * res <= 1.0, f"max distance {worst * res:.3f} voxels"


def test_voxel_size_and_aabb_from_data():
    mesh = shapes.sphere(subdivisions=3)
    c1, d1, f1 = mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, voxel_size=1 / 32, aabb=AABB)
    c2, d2, f2 = mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, grid_size=32, aabb=AABB)
    assert torch.equal(c1, c2) and torch.allclose(d1, d2) and torch.equal(f1, f2)
    c3, _, _ = mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, grid_size=32)
    assert c3.shape[0] > 0 and int(c3.max()) < 32


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), "empty"),
        (np.array([[0, 0, 0], [0.1, 0, 0], [np.nan, 0.1, 0]]), np.array([[0, 1, 2]]), "NaN"),
        (np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]), np.array([[0, 1, 3]]), "out of range"),
        (np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]), np.array([[0, 1]]), "triangles"),
    ],
)
def test_bad_input_is_a_clear_error(vertices, faces, message):
    with pytest.raises(ValueError, match=message):
        mesh_to_flexible_dual_grid(vertices, faces, grid_size=32, aabb=AABB)


def test_missing_grid_and_outside_mesh_errors():
    mesh = shapes.sphere(subdivisions=2)
    with pytest.raises(ValueError, match="voxel_size or grid_size"):
        mesh_to_flexible_dual_grid(mesh.vertices, mesh.faces, aabb=AABB)
    with pytest.raises(ValueError, match="crosses no voxel edge"):
        mesh_to_flexible_dual_grid(mesh.vertices + 5.0, mesh.faces, grid_size=32, aabb=AABB)
