"""Sparse voxel lookups: trilinear sampling of per-voxel attributes (FlexGEMM `grid_sample_3d` semantics).

Voxel `i` holds its value at its centre `i + 0.5` (voxel units). A trilinear query blends the 8 voxels
around the point; only voxels that exist in the sparse set contribute and their weights are renormalised.
A query with no existing neighbour gets zeros and weight sum 0 (callers decide how to fill it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from o_voxel.voxel_index import VoxelIndex

_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


class SparseVoxelGrid:
    """A sparse voxel set inside a bounded grid `[0, grid_size)`: coordinate -> row lookups in O(1).

    Checks the voxels against the grid and answers lookups with `VoxelIndex`, the project's one voxel
    index (a two-level brick table, or sorted keys for scattered sets). `use_table` forces the brick
    table (True) or sorted keys (False); None lets the index choose.
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
        mode = None if use_table is None else ("bricks" if use_table else "sorted")
        self.index = VoxelIndex(coords, reach=0, mode=mode)

    def find(self, coords: torch.Tensor) -> torch.Tensor:
        """Row index (int64) of each coordinate (any leading shape, last dim 3), -1 where absent or outside."""
        return self.index.find(coords).to(torch.int64)


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
        w = (w_axis[:, 0, :, None, None] * w_axis[:, 1, None, :, None] * w_axis[:, 2, None, None, :]).reshape(
            -1, 8
        )
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
