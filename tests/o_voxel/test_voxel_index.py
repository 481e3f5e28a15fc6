"""`VoxelIndex`, the one voxel lookup (sparse conv neighbours, attribute sampling, dual-grid quads)."""

from __future__ import annotations

import pytest
import torch

from o_voxel.voxel_index import VoxelIndex


def _voxels(seed: int, count: int, extent: int, batches: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.randint(0, extent, (count * 2, 3), generator=gen)
    if batches:
        xyz = torch.cat([torch.randint(0, batches, (count * 2, 1), generator=gen), xyz], dim=1)
    unique = torch.unique(xyz, dim=0)
    return unique[torch.randperm(unique.shape[0], generator=gen)[:count]]


@pytest.mark.parametrize("mode", [None, "bricks", "sorted"])
@pytest.mark.parametrize("batches", [0, 3])
def test_find_matches_a_dictionary(mode, batches):
    coords = _voxels(1, 300, 20, batches)
    index = VoxelIndex(coords, reach=0, mode=mode)
    assert index.mode == (mode or "bricks")
    rows = {tuple(c): i for i, c in enumerate(coords.tolist())}
    queries = torch.randint(-3, 24, (2000, coords.shape[1]), generator=torch.Generator().manual_seed(2))
    queries = torch.cat([queries, coords[:50]])
    expected = [rows.get(tuple(q), -1) for q in queries.tolist()]
    found = index.find(queries)
    assert found.dtype == torch.int32 and found.tolist() == expected
    assert index.find(queries.reshape(-1, 2, coords.shape[1])).reshape(-1).tolist() == expected


@pytest.mark.parametrize("mode", ["bricks", "sorted"])
def test_xyz_index_agrees_with_a_single_batch_index(mode):
    xyz = _voxels(3, 200, 40)
    bxyz = torch.cat([torch.zeros(xyz.shape[0], 1, dtype=xyz.dtype), xyz], dim=1)
    index3, index4 = VoxelIndex(xyz, reach=2, mode=mode), VoxelIndex(bxyz, reach=2, mode=mode)
    d = torch.arange(-2, 3)
    x, y, z = (xyz[:, axis, None] + d for axis in range(3))  # [n, 5] each
    x, y, z = x[:, :, None, None], y[:, None, :, None], z[:, None, None, :]
    box3 = index3.lookup(x, y, z)
    box4 = index4.lookup(torch.zeros(1, dtype=torch.int64), x, y, z)
    assert box3.shape == (200, 5, 5, 5) and torch.equal(box3, box4)
    assert box3[:, 2, 2, 2].tolist() == list(range(200))  # the centre of each box is the voxel itself


def test_errors_and_the_empty_index():
    with pytest.raises(ValueError, match="duplicate"):
        VoxelIndex(torch.tensor([[1, 2, 3], [1, 2, 3]]), mode="bricks")
    with pytest.raises(ValueError, match="duplicate"):
        VoxelIndex(torch.tensor([[1, 2, 3], [1, 2, 3]]), mode="sorted")
    with pytest.raises(ValueError, match="non-negative"):
        VoxelIndex(torch.tensor([[-1, 2, 3]]))
    with pytest.raises(ValueError, match=r"\[N, 3\] or \[N, 4\]"):
        VoxelIndex(torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="columns"):
        VoxelIndex(torch.tensor([[1, 2, 3]])).find(torch.zeros(2, 4, dtype=torch.int64))
    empty = VoxelIndex(torch.zeros(0, 3, dtype=torch.int64))
    assert empty.find(torch.tensor([[0, 0, 0], [5, 1, 2]])).tolist() == [-1, -1]
