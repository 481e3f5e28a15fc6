"""Sparse trilinear sampling (FlexGEMM grid_sample_3d semantics) and sparse voxel lookups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from o_voxel.attributes import SparseVoxelGrid, grid_sample_3d, sample_trilinear


def test_full_grid_matches_dense_trilinear():
    torch.manual_seed(0)
    n = 6
    dense = torch.rand(2, n, n, n)
    coords = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    feats = dense.permute(1, 2, 3, 0).reshape(-1, 2)
    points = torch.rand(500, 3) * (n - 1) + 0.5  # interior: all 8 neighbours exist
    ours = grid_sample_3d(feats, coords, (n, n, n), points)
    norm = points / n * 2 - 1
    ref = F.grid_sample(dense[None], norm.flip(-1)[None, :, None, None], align_corners=False)[0, :, :, 0, 0].T
    assert torch.allclose(ours, ref, atol=1e-5)


def test_voxel_centre_returns_its_value_and_missing_neighbours_are_renormalised():
    coords = torch.tensor([[1, 1, 1], [2, 1, 1], [5, 5, 5]])
    feats = torch.tensor([[0.2], [0.8], [0.5]])
    grid = SparseVoxelGrid(coords, (8, 8, 8))
    pts = torch.tensor(
        [[1.5, 1.5, 1.5], [1.75, 1.5, 1.5], [2.0, 1.9, 1.2], [7.9, 0.1, 0.1], [float("nan"), 1, 1]]
    )
    values, weight = sample_trilinear(feats, grid, pts)
    assert values[0, 0] == pytest.approx(0.2)
    assert values[1, 0] == pytest.approx(0.2 * 0.75 + 0.8 * 0.25)
    # only voxels (1,1,1) and (2,1,1) exist around the third point: equal x weights after renormalising
    assert values[2, 0] == pytest.approx(0.5)
    assert weight[2] > 0
    assert weight[3] == 0 and values[3, 0] == 0  # no existing neighbour -> 0, flagged by zero weight
    assert weight[4] == 0 and values[4, 0] == 0  # NaN query -> no neighbour


@pytest.mark.parametrize("use_table", [True, False])
def test_find_and_errors(use_table):
    grid = SparseVoxelGrid(torch.tensor([[0, 0, 0], [3, 2, 1], [19, 0, 7]]), (20, 9, 9), use_table=use_table)
    rows = grid.find(
        torch.tensor([[3, 2, 1], [0, 0, 0], [1, 1, 1], [-1, 0, 0], [20, 0, 0], [19, 0, 7], [19, 0, 8]])
    )
    assert rows.tolist() == [1, 0, -1, -1, -1, 2, -1]
    with pytest.raises(ValueError, match="no voxels"):
        SparseVoxelGrid(torch.zeros(0, 3, dtype=torch.long), (4, 4, 4))
    with pytest.raises(ValueError, match="duplicate"):
        SparseVoxelGrid(torch.tensor([[1, 1, 1], [1, 1, 1]]), (4, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, grid_size\)"):
        SparseVoxelGrid(torch.tensor([[4, 0, 0]]), (4, 4, 4))
