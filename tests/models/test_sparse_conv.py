"""Sparse core: submanifold conv against a dense `conv3d` reference, and channel <-> space resampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from o_voxel import voxel_index
from trellis2.modules.sparse import (
    SparseConv3d,
    SparseTensor,
    channel_to_spatial,
    neighbor_map,
    neighbors_of,
    spatial_to_channel,
    submanifold_neighbor_map,
)
from trellis2.modules.sparse import conv as conv_module


def random_voxels(generator: torch.Generator, counts: list[int], extent: int) -> torch.Tensor:
    """Unique random coords for each batch element, batch-contiguous, shuffled within each element."""
    rows = []
    for b, n in enumerate(counts):
        flat = torch.randperm(extent**3, generator=generator)[:n]
        xyz = torch.stack([flat // extent**2, (flat // extent) % extent, flat % extent], dim=1)
        rows.append(torch.cat([torch.full((n, 1), b), xyz], dim=1))
    return torch.cat(rows).to(torch.int32)


def dense_reference(
    x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int = 1
) -> torch.Tensor:
    """Scatter into a zero grid, dense cross-correlation, read back at the active voxels (float64)."""
    b = x.batch_size
    sx, sy, sz = x.spatial_shape
    grid = torch.zeros(b, x.feats.shape[1], sx, sy, sz, dtype=torch.float64)
    c = x.coords.long()
    grid[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.feats.double()
    k = weight.shape[1]
    out = F.conv3d(
        grid,
        weight.permute(0, 4, 1, 2, 3).double(),
        bias.double(),
        padding=(k // 2) * dilation,
        dilation=dilation,
    )
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("lookup", ["bricks", "sorted_keys", "per_chunk"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_matches_dense_conv3d_on_two_batch_elements(dilation, lookup, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    coords = random_voxels(gen, [300, 170], extent=9)
    feats = torch.randn(coords.shape[0], 5, generator=gen)
    x = SparseTensor(feats, coords)
    conv = SparseConv3d(5, 7, 3, dilation=dilation)
    with torch.no_grad():
        conv.bias.normal_(generator=gen)
    # Force several chunks in both the neighbour lookup and the gather-GEMM.
    monkeypatch.setattr(conv_module, "GATHER_BUDGET_BYTES", 27 * 5 * 4 * 64)
    monkeypatch.setattr(conv_module, "LOOKUP_CHUNK_KEYS", 27 * 50)
    if lookup == "sorted_keys":
        monkeypatch.setattr(voxel_index, "MAX_COARSE_CELLS", 0)
    if lookup == "per_chunk":  # no stored map: every conv chunk looks its neighbours up
        monkeypatch.setattr(conv_module, "NEIGHBOR_MAP_MAX_BYTES", 0)
    with torch.no_grad():
        out = conv(x)
    ref = dense_reference(x, conv.weight.detach(), conv.bias.detach(), dilation)
    assert torch.equal(out.coords, coords)
    torch.testing.assert_close(out.feats.double(), ref, atol=1e-5, rtol=1e-5)


def test_neighbours_never_cross_batch_elements():
    # Same voxel position in two batch elements: each only sees its own neighbour.
    coords = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 1], [1, 1, 1, 1]], dtype=torch.int32)
    nmap = submanifold_neighbor_map(coords)
    centre, plus_x = 13, 9 * 2 + 3 * 1 + 1
    assert nmap[:, centre].tolist() == [0, 1, 2]
    assert nmap[0, plus_x] == 1 and nmap[2, plus_x] == -1
    assert (nmap[2] >= 0).sum() == 1


def test_single_tap_reads_the_documented_neighbour():
    # Golden README: with only W[0, 2, 1, 0, 0] = 1, voxel (x, y, z) receives the feature of (x+1, y, z-1).
    coords = torch.tensor([[0, 3, 3, 3], [0, 4, 3, 2], [0, 2, 3, 4], [0, 4, 3, 4]], dtype=torch.int32)
    feats = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    conv = SparseConv3d(1, 1, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 2, 1, 0, 0] = 1.0
        out = conv(SparseTensor(feats, coords)).feats[:, 0]
    # (3,3,3) <- (4,3,2) = 2; (2,3,4) <- (3,3,3) = 1; the others have no such neighbour.
    assert out.tolist() == [2.0, 0.0, 1.0, 0.0]


def test_neighbour_map_is_cached_and_shared_by_replace():
    gen = torch.Generator().manual_seed(1)
    coords = random_voxels(gen, [50], extent=5)
    x = SparseTensor(torch.randn(50, 4, generator=gen), coords)
    first = neighbors_of(x)
    y = x.replace(torch.randn(50, 4, generator=gen))
    assert neighbors_of(y) is first
    z = SparseTensor(y.feats, coords.clone())
    assert neighbors_of(z) is not first and torch.equal(neighbor_map(z), neighbor_map(x))


def test_half_precision_conv_is_close_to_float32():
    gen = torch.Generator().manual_seed(2)
    coords = random_voxels(gen, [200], extent=8)
    x = SparseTensor(torch.randn(200, 16, generator=gen), coords)
    conv = SparseConv3d(16, 8, 3)
    with torch.no_grad():
        ref = conv(x).feats
        out = conv.half()(x.type(torch.float16)).feats
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("max_cells", [2**25, 0])
def test_duplicate_voxels_are_rejected(max_cells, monkeypatch):
    monkeypatch.setattr(voxel_index, "MAX_COARSE_CELLS", max_cells)
    dup = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 1], [0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="duplicate voxel"):
        SparseConv3d(4, 4, 3)(SparseTensor(torch.zeros(3, 4), dup))


def test_bad_inputs_give_clear_errors():
    conv = SparseConv3d(4, 4, 3)
    dup = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="expects 4 channels"):
        conv(SparseTensor(torch.zeros(2, 3), dup))
    neg = torch.tensor([[0, -1, 0, 0]], dtype=torch.int32)
    with pytest.raises(ValueError, match="non-negative"):
        conv(SparseTensor(torch.zeros(1, 4), neg))
    with pytest.raises(ValueError, match="submanifold"):
        SparseConv3d(4, 4, 3, stride=2)
    empty = SparseTensor(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.int32))
    assert conv(empty).feats.shape == (0, 4)


def test_channel_to_spatial_worked_example():
    # Spec appendix B.1: one parent (0, 1, 2, 3), 16 channels, mask [T, F, T, T, F, F, F, T].
    x = SparseTensor(torch.arange(16.0)[None], torch.tensor([[0, 1, 2, 3]], dtype=torch.int32))
    mask = torch.tensor([[True, False, True, True, False, False, False, True]])
    y = channel_to_spatial(x, mask)
    assert y.coords.tolist() == [[0, 2, 4, 6], [0, 2, 5, 6], [0, 3, 5, 6], [0, 3, 5, 7]]
    assert y.feats.tolist() == [[0, 1], [4, 5], [6, 7], [14, 15]]


def test_children_follow_parent_order_then_sub_index():
    gen = torch.Generator().manual_seed(3)
    coords = random_voxels(gen, [20, 11], extent=6)
    x = SparseTensor(torch.randn(31, 8 * 3, generator=gen), coords)
    mask = torch.rand(31, 8, generator=gen) > 0.5
    y = channel_to_spatial(x, mask)
    expected_coords, expected_feats = [], []
    for i in range(31):
        for k in range(8):
            if mask[i, k]:
                d = [k & 1, (k >> 1) & 1, (k >> 2) & 1]
                c = coords[i].tolist()
                expected_coords.append([c[0]] + [2 * c[a + 1] + d[a] for a in range(3)])
                expected_feats.append(x.feats[i, 3 * k : 3 * k + 3])
    assert y.coords.tolist() == expected_coords
    assert torch.equal(y.feats, torch.stack(expected_feats))
    # spatial_to_channel inverts it (parents come back in lexicographic order, absent children zero).
    back = spatial_to_channel(y)
    order = sorted(range(31), key=lambda i: coords[i].tolist())
    keep = [i for i in order if mask[i].any()]
    assert back.coords.tolist() == [coords[i].tolist() for i in keep]
    expected = (x.feats.reshape(31, 8, 3) * mask[..., None]).reshape(31, 24)[keep]
    assert torch.equal(back.feats, expected)


def test_subdivision_mask_must_match():
    x = SparseTensor(torch.zeros(2, 16), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="one flag per child"):
        channel_to_spatial(x, torch.ones(3, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        channel_to_spatial(x, torch.ones(2, 8))


@pytest.mark.parametrize("mode", ["bricks", "sorted"])
def test_neighbour_map_on_a_large_grid_matches_brute_force(mode, monkeypatch):
    """Coordinates near 1536 in two batch elements, with both lookup structures."""
    if mode == "sorted":
        monkeypatch.setattr(voxel_index, "MAX_COARSE_CELLS", 0)
    assert voxel_index.VoxelIndex(torch.tensor([[0, 1535, 0, 1535]])).mode == mode
    gen = torch.Generator().manual_seed(4)
    local = random_voxels(gen, [120, 90], extent=5)
    coords = local.clone()
    coords[:, 1:] += torch.tensor([1530, 0, 1400], dtype=torch.int32)
    nmap = submanifold_neighbor_map(coords)
    index = {tuple(c): i for i, c in enumerate(coords.tolist())}
    offsets = [(a - 1, b - 1, c - 1) for a in range(3) for b in range(3) for c in range(3)]
    expected = [
        [index.get((c[0], c[1] + dx, c[2] + dy, c[3] + dz), -1) for dx, dy, dz in offsets]
        for c in coords.tolist()
    ]
    assert nmap.tolist() == expected


@pytest.mark.parametrize("max_cells", [2**25, 0])
def test_voxel_index_lookups(max_cells, monkeypatch):
    monkeypatch.setattr(voxel_index, "MAX_COARSE_CELLS", max_cells)
    coords = torch.tensor([[0, 0, 0, 0], [0, 9, 3, 17], [1, 0, 0, 0], [1, 8, 8, 8]], dtype=torch.int32)
    index = voxel_index.VoxelIndex(coords, reach=2)
    b = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])
    x = torch.tensor([0, 9, 0, 8, -2, 10, 11, 7])
    y = torch.tensor([0, 3, 0, 8, -1, 10, 5, 8])
    z = torch.tensor([0, 17, 0, 8, 0, 10, 19, 8])
    assert index.lookup(b, x, y, z).tolist() == [0, 1, 2, 3, -1, -1, -1, -1]
    empty = voxel_index.VoxelIndex(torch.zeros(0, 4, dtype=torch.int32))
    assert empty.lookup(b, x, y, z).tolist() == [-1] * 8
