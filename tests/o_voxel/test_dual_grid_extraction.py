"""`flexible_dual_grid_to_mesh`: golden case 10 (both split modes), training mode, and bad input."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from o_voxel.convert import flexible_dual_grid_to_mesh
from o_voxel.convert.dual_grid_to_mesh import find_quads

UNIT_BOX = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]


@pytest.fixture(scope="module")
def case10(golden_dir):
    return load_file(golden_dir / "case10_dual_grid" / "case10_io.safetensors")


def test_quads_in_extraction_order(case10):
    quads = find_quads(case10["coords"], case10["intersected"], case10["grid_size"].long())
    assert torch.equal(quads.to(torch.int32), case10["quads"])


@pytest.mark.parametrize("mode", ["minangle", "weighted"])
def test_golden_extraction(case10, mode):
    weights = case10["split_weight"] if mode == "weighted" else None
    vertices, faces = flexible_dual_grid_to_mesh(
        case10["coords"],
        case10["dual_vertices"],
        case10["intersected"],
        weights,
        aabb=case10["aabb"],
        grid_size=case10["grid_size"],
    )
    assert faces.dtype == torch.int32
    torch.testing.assert_close(vertices, case10[f"out_vertices_{mode}"], atol=1e-6, rtol=0)
    assert torch.equal(faces, case10[f"out_faces_{mode}"])


def test_voxel_size_and_grid_size_agree(case10):
    args = (case10["coords"], case10["dual_vertices"], case10["intersected"], case10["split_weight"])
    size = (case10["aabb"][1] - case10["aabb"][0]) / case10["grid_size"]
    v1, f1 = flexible_dual_grid_to_mesh(*args, aabb=case10["aabb"], grid_size=case10["grid_size"].tolist())
    v2, f2 = flexible_dual_grid_to_mesh(*args, aabb=case10["aabb"].numpy(), voxel_size=size)
    assert torch.equal(f1, f2)
    torch.testing.assert_close(v1, v2)


def four_voxels_around_an_x_edge() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    coords = torch.tensor([[1, 1, 1], [1, 1, 2], [1, 2, 2], [1, 2, 1]], dtype=torch.int32)
    dual = torch.full((4, 3), 0.5)
    flags = torch.zeros(4, 3, dtype=torch.bool)
    flags[0, 0] = True
    return coords, dual, flags


def test_split_weights_pick_the_diagonal():
    coords, dual, flags = four_voxels_around_an_x_edge()
    heavy_02 = torch.tensor([[2.0], [1.0], [2.0], [1.0]])
    _, faces = flexible_dual_grid_to_mesh(coords, dual, flags, heavy_02, UNIT_BOX, grid_size=4)
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    _, faces = flexible_dual_grid_to_mesh(coords, dual, flags, heavy_02.flip(0), UNIT_BOX, grid_size=4)
    assert faces.tolist() == [[0, 1, 3], [3, 1, 2]]
    # A missing corner voxel drops the quad; a voxel on the grid's far side has no outside neighbours.
    _, faces = flexible_dual_grid_to_mesh(
        coords[:3], dual[:3], flags[:3], heavy_02[:3], UNIT_BOX, grid_size=4
    )
    assert faces.shape == (0, 3)


def test_training_mode_fans_around_weighted_centre():
    coords, dual, flags = four_voxels_around_an_x_edge()
    w = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    vertices, faces = flexible_dual_grid_to_mesh(coords, dual, flags, w, UNIT_BOX, grid_size=4, train=True)
    assert vertices.shape == (5, 3) and faces.shape == (4, 3)
    assert faces.tolist() == [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]
    p = vertices[:4]
    expected = (3 * (p[0] + p[2]) / 2 + 8 * (p[1] + p[3]) / 2) / 11
    torch.testing.assert_close(vertices[4], expected)
    torch.testing.assert_close(p[0], (torch.tensor([1.0, 1, 1]) + 0.5) / 4 - 0.5)


def test_bad_input_is_explained():
    coords, dual, flags = four_voxels_around_an_x_edge()
    with pytest.raises(ValueError, match="voxel_size or grid_size"):
        flexible_dual_grid_to_mesh(coords, dual, flags, None, UNIT_BOX)
    with pytest.raises(ValueError, match="inside the grid"):
        flexible_dual_grid_to_mesh(coords, dual, flags, None, UNIT_BOX, grid_size=2)
    with pytest.raises(ValueError, match=r"coords must be \[N, 3\]"):
        flexible_dual_grid_to_mesh(coords[:, :2], dual, flags, None, UNIT_BOX, grid_size=4)
    with pytest.raises(ValueError, match="integer"):
        flexible_dual_grid_to_mesh(coords.float(), dual, flags, None, UNIT_BOX, grid_size=4)
    with pytest.raises(ValueError, match="dual_vertices"):
        flexible_dual_grid_to_mesh(coords, dual[:2], flags, None, UNIT_BOX, grid_size=4)
    with pytest.raises(ValueError, match="train=True needs split_weight"):
        flexible_dual_grid_to_mesh(coords, dual, flags, None, UNIT_BOX, grid_size=4, train=True)
    with pytest.raises(ValueError, match="aabb"):
        flexible_dual_grid_to_mesh(coords, dual, flags, None, [[0, 0, 0]], grid_size=4)
    empty = torch.zeros(0, 3)
    vertices, faces = flexible_dual_grid_to_mesh(
        empty.int(), empty, empty.bool(), None, UNIT_BOX, grid_size=4
    )
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
