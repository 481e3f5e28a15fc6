"""Sparse voxel lookups: trilinear sampling of per-voxel attributes (FlexGEMM `grid_sample_3d` semantics).

Voxel `i` holds its value at its centre `i + 0.5` (voxel units). A trilinear query blends the 8 voxels
around the point; only voxels that exist in the sparse set contribute and their weights are renormalised.
A query with no existing neighbour gets zeros and weight sum 0 (callers decide how to fill it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


class SparseVoxelGrid:
    """Sorted-key index of a sparse voxel set: coordinate -> row lookups with `searchsorted`."""

    def __init__(self, coords: torch.Tensor, grid_size: Sequence[int]):
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(f"voxel coords must have shape (N, 3), got {tuple(coords.shape)}")
        if coords.shape[0] == 0:
            raise ValueError("the attribute volume has no voxels; nothing can be sampled from it")
        self.grid_size = torch.as_tensor([int(g) for g in grid_size], dtype=torch.int64, device=coords.device)
        coords = coords.to(torch.int64)
        if bool((coords < 0).any()) or bool((coords >= self.grid_size).any()):
            raise ValueError(f"voxel coords must lie in [0, grid_size) = [0, {self.grid_size.tolist()})")
        keys = self._keys(coords)
        self.sorted_keys, self.order = torch.sort(keys)
        if self.sorted_keys.numel() > 1 and bool((self.sorted_keys[1:] == self.sorted_keys[:-1]).any()):
            raise ValueError("voxel coords contain duplicates; each voxel must appear once")

    def _keys(self, coords: torch.Tensor) -> torch.Tensor:
        g = self.grid_size
        return (coords[..., 0] * g[1] + coords[..., 1]) * g[2] + coords[..., 2]

    def find(self, coords: torch.Tensor) -> torch.Tensor:
        """Row index of each coordinate in the original voxel order, -1 where absent or outside the grid."""
        coords = coords.to(torch.int64)
        inside = ((coords >= 0) & (coords < self.grid_size)).all(-1)
        keys = self._keys(coords.clamp(min=0))
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=self.sorted_keys.numel() - 1)
        hit = inside & (self.sorted_keys[pos] == keys)
        return torch.where(hit, self.order[pos], torch.full_like(pos, -1))


def sample_trilinear(
    feats: torch.Tensor,
    grid: SparseVoxelGrid,
    points: torch.Tensor,
    chunk_size: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear sample of sparse `feats (N, C)` at `points (L, 3)` given in voxel units.

    Returns `(values (L, C), weight_sum (L,))`; `weight_sum == 0` marks points with no existing neighbour
    (their values are 0). Non-finite points are treated as having no neighbour.
    """
    if feats.ndim != 2 or feats.shape[0] != grid.order.numel():
        raise ValueError(
            f"attribute volume has shape {tuple(feats.shape)}; expected ({grid.order.numel()}, C) "
            "to match the voxel coords"
        )
    corners = _CORNERS.to(points.device)
    values = torch.zeros(points.shape[0], feats.shape[1], dtype=feats.dtype, device=points.device)
    weight_sum = torch.zeros(points.shape[0], dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], chunk_size):
        q = points[start : start + chunk_size].to(torch.float32)
        finite = torch.isfinite(q).all(-1)
        q = torch.where(finite[:, None], q, torch.full_like(q, -1e6))
        base = torch.floor(q - 0.5).to(torch.int64)
        cand = base[:, None, :] + corners[None]  # (l, 8, 3)
        w = (1.0 - (q[:, None, :] - (cand.to(torch.float32) + 0.5)).abs()).clamp(min=0).prod(-1)  # (l, 8)
        rows = grid.find(cand)
        present = rows >= 0
        w = torch.where(present, w, torch.zeros_like(w))
        gathered = feats[rows.clamp(min=0)].to(torch.float32)  # (l, 8, C)
        total = w.sum(-1)
        out = (gathered * w[..., None]).sum(1) / total.clamp(min=1e-12)[:, None]
        values[start : start + chunk_size] = out.to(feats.dtype)
        weight_sum[start : start + chunk_size] = total
    return values, weight_sum


def grid_sample_3d(
    feats: torch.Tensor, coords: torch.Tensor, grid_size: Sequence[int], points: torch.Tensor
) -> torch.Tensor:
    """One-shot trilinear sample (values only); `points (L, 3)` in voxel units with centres at `i + 0.5`."""
    return sample_trilinear(feats, SparseVoxelGrid(coords, grid_size), points)[0]
