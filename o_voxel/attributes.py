"""Sparse voxel lookups: trilinear sampling of per-voxel attributes (FlexGEMM `grid_sample_3d` semantics).

Voxel `i` holds its value at its centre `i + 0.5` (voxel units). A trilinear query blends the 8 voxels
around the point; only voxels that exist in the sparse set contribute and their weights are renormalised.
A query with no existing neighbour gets zeros and weight sum 0 (callers decide how to fill it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


_BLOCK = 8  # voxels per block side in the two-level lookup table
_MAX_COARSE_CELLS = 1 << 26  # beyond this the coarse table would be too large: use sorted keys instead


class SparseVoxelGrid:
    """Index of a sparse voxel set: coordinate -> row lookups in O(1).

    Two-level table: a dense coarse grid of 8^3 blocks holds the id of each occupied block, and every
    occupied block stores its 512 voxel rows (-1 where absent). For grids too large for the coarse table or
    voxels too scattered for blocks (`use_table=None` decides), lookups use binary search over sorted keys.
    """

    def __init__(self, coords: torch.Tensor, grid_size: Sequence[int], use_table: bool | None = None):
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(f"voxel coords must have shape (N, 3), got {tuple(coords.shape)}")
        if coords.shape[0] == 0:
            raise ValueError("the attribute volume has no voxels; nothing can be sampled from it")
        device = coords.device
        self.grid_size = torch.as_tensor([int(g) for g in grid_size], dtype=torch.int64, device=device)
        self.num_voxels = coords.shape[0]
        coords = coords.to(torch.int64)
        if bool((coords < 0).any()) or bool((coords >= self.grid_size).any()):
            raise ValueError(f"voxel coords must lie in [0, grid_size) = [0, {self.grid_size.tolist()})")
        sorted_keys, order = torch.sort(self._keys(coords, self.grid_size))
        if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
            raise ValueError("voxel coords contain duplicates; each voxel must appear once")
        self.blocks = (self.grid_size + _BLOCK - 1) // _BLOCK
        automatic = use_table is None
        rows = torch.arange(coords.shape[0], dtype=torch.int32, device=device)
        if use_table is None:
            use_table = int(self.blocks.prod()) <= _MAX_COARSE_CELLS
        if use_table:
            block_keys = self._keys(coords // _BLOCK, self.blocks)
            occupied, block_id = torch.unique(block_keys, return_inverse=True)
            if automatic and occupied.numel() * _BLOCK**3 > 64 * coords.shape[0] + (1 << 20):
                use_table = False  # too scattered: the block table would waste memory
        if use_table:
            self.coarse = torch.full((int(self.blocks.prod()),), -1, dtype=torch.int32, device=device)
            self.coarse[occupied] = torch.arange(occupied.numel(), dtype=torch.int32, device=device)
            self.fine = torch.full((occupied.numel(), _BLOCK**3), -1, dtype=torch.int32, device=device)
            self.fine[block_id, self._local(coords)] = rows
            self.sorted_keys = self.order = None
        else:
            self.coarse = self.fine = None
            self.sorted_keys, self.order = sorted_keys, order

    @staticmethod
    def _keys(coords: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return (coords[..., 0] * size[1] + coords[..., 1]) * size[2] + coords[..., 2]

    @staticmethod
    def _local(coords: torch.Tensor) -> torch.Tensor:
        local = coords % _BLOCK
        return (local[..., 0] * _BLOCK + local[..., 1]) * _BLOCK + local[..., 2]

    def find(self, coords: torch.Tensor) -> torch.Tensor:
        """Row index of each coordinate (any leading shape, last dim 3), -1 where absent or outside the grid."""
        coords = coords.to(torch.int64)
        size = self.grid_size.to(coords.device)
        inside = ((coords >= 0) & (coords < size)).all(-1)
        coords = torch.where(inside[..., None], coords, torch.zeros_like(coords))
        if self.coarse is not None:
            block = self.coarse[self._keys(coords // _BLOCK, self.blocks.to(coords.device))].to(torch.int64)
            row = self.fine[block.clamp(min=0), self._local(coords)].to(torch.int64)
            return torch.where(inside & (block >= 0), row, torch.full_like(row, -1))
        keys = self._keys(coords, size)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=self.sorted_keys.numel() - 1)
        hit = inside & (self.sorted_keys[pos] == keys)
        return torch.where(hit, self.order[pos], torch.full_like(pos, -1))


def sample_trilinear(
    feats: torch.Tensor,
    grid: SparseVoxelGrid,
    points: torch.Tensor,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear sample of sparse `feats (N, C)` at `points (L, 3)` given in voxel units.

    Returns `(values (L, C), weight_sum (L,))`; `weight_sum == 0` marks points with no existing neighbour
    (their values are 0). Non-finite points are treated as having no neighbour.
    """
    if feats.ndim != 2 or feats.shape[0] != grid.num_voxels:
        raise ValueError(
            f"attribute volume has shape {tuple(feats.shape)}; expected ({grid.num_voxels}, C) "
            "to match the voxel coords"
        )
    device = points.device
    if chunk_size is None:  # small chunks keep CPU temporaries in cache; GPUs like big batches
        chunk_size = 1 << 20 if device.type == "cuda" else 1 << 15
    corners = _CORNERS.to(device)
    g = grid.grid_size.to(device)
    values = torch.zeros(points.shape[0], feats.shape[1], dtype=feats.dtype, device=device)
    weight_sum = torch.zeros(points.shape[0], dtype=torch.float32, device=device)
    for start in range(0, points.shape[0], chunk_size):
        q = points[start : start + chunk_size].to(torch.float32) - 0.5
        finite = torch.isfinite(q).all(-1)
        q = torch.where(finite[:, None], q, torch.full_like(q, -1e6))
        base_f = torch.floor(q)
        frac = q - base_f
        base = base_f.clamp(-2, float(g.max()) + 1).to(torch.int64)
        # per-axis weights and in-grid masks for the lower (0) and upper (1) neighbour
        w_axis = torch.stack([1 - frac, frac], -1)  # (l, 3, 2)
        idx_axis = base[..., None] + torch.arange(2, device=device)  # (l, 3, 2)
        ok_axis = (idx_axis >= 0) & (idx_axis < g[None, :, None])
        w_axis = torch.where(ok_axis, w_axis, torch.zeros_like(w_axis))
        w = (w_axis[:, 0, :, None, None] * w_axis[:, 1, None, :, None] * w_axis[:, 2, None, None, :]).reshape(-1, 8)
        rows = grid.find(base[:, None, :] + corners)  # (l, 8)
        w = torch.where(rows >= 0, w, torch.zeros_like(w))
        total = w.sum(-1)
        gathered = feats[rows.clamp(min=0)].to(torch.float32)  # (l, 8, C)
        out = torch.einsum("lk,lkc->lc", w, gathered) / total.clamp(min=1e-12)[:, None]
        values[start : start + chunk_size] = out.to(feats.dtype)
        weight_sum[start : start + chunk_size] = total
    return values, weight_sum


def grid_sample_3d(
    feats: torch.Tensor, coords: torch.Tensor, grid_size: Sequence[int], points: torch.Tensor
) -> torch.Tensor:
    """One-shot trilinear sample (values only); `points (L, 3)` in voxel units with centres at `i + 0.5`."""
    return sample_trilinear(feats, SparseVoxelGrid(coords, grid_size), points)[0]
