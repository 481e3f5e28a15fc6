"""`SparseTensor`: features on the active voxels of a batch of 3D grids.

`feats [N, C]` and int32 `coords [N, 4]` = `(batch, x, y, z)`. Rows of one batch element are
contiguous and batch indices ascend; within a batch element the row order is free but every
operation preserves it. Per-resolution structures (neighbour maps, RoPE phases, ...) are cached in
`spatial_cache`, which `replace` shares, so a chain of layers at one resolution builds them once.
"""

from __future__ import annotations

from typing import Any

import torch


class SparseTensor:
    """A batch of sparse voxel grids with per-voxel features."""

    def __init__(
        self,
        feats: torch.Tensor,
        coords: torch.Tensor,
        batch_size: int | None = None,
        spatial_cache: dict[str, Any] | None = None,
    ) -> None:
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must be [N, 4] (batch, x, y, z), got {tuple(coords.shape)}")
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords has {coords.shape[0]}")
        self.feats = feats
        self.coords = coords if coords.dtype == torch.int32 else coords.to(torch.int32)
        self._batch_size = batch_size
        self.spatial_cache: dict[str, Any] = {} if spatial_cache is None else spatial_cache

    # --- structure -------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = int(self.coords[:, 0].max().item()) + 1 if self.coords.shape[0] else 0
        return self._batch_size

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.batch_size, *self.feats.shape[1:]])

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def layout(self) -> list[slice]:
        """One contiguous row slice per batch element."""
        if "layout" not in self.spatial_cache:
            counts = torch.bincount(self.coords[:, 0].long(), minlength=self.batch_size).tolist()
            starts = [0]
            for c in counts:
                starts.append(starts[-1] + c)
            self.spatial_cache["layout"] = [slice(starts[i], starts[i + 1]) for i in range(len(counts))]
        return self.spatial_cache["layout"]

    @property
    def seqlens(self) -> list[int]:
        return [s.stop - s.start for s in self.layout]

    @property
    def batch_index(self) -> torch.Tensor:
        """Per-row batch index as int64 (for gathers and scatters)."""
        return self.coords[:, 0].long()

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """`max(coords[:, 1:]) + 1` per axis over the whole tensor."""
        if "spatial_shape" not in self.spatial_cache:
            if self.coords.shape[0] == 0:
                self.spatial_cache["spatial_shape"] = (0, 0, 0)
            else:
                mx = self.coords[:, 1:].max(dim=0).values + 1
                self.spatial_cache["spatial_shape"] = tuple(int(v) for v in mx.tolist())
        return self.spatial_cache["spatial_shape"]

    # --- derived tensors -------------------------------------------------------------------
    def replace(self, feats: torch.Tensor, coords: torch.Tensor | None = None) -> SparseTensor:
        """Same voxels (and cache) with new features; new coords start a fresh cache."""
        if coords is None:
            return SparseTensor(feats, self.coords, self._batch_size, self.spatial_cache)
        return SparseTensor(feats, coords, self._batch_size)

    def to(self, *args, **kwargs) -> SparseTensor:
        feats = self.feats.to(*args, **kwargs)
        device = feats.device
        if device == self.coords.device:
            return SparseTensor(feats, self.coords, self._batch_size, self.spatial_cache)
        return SparseTensor(feats, self.coords.to(device), self._batch_size)

    def type(self, dtype: torch.dtype) -> SparseTensor:
        return self.replace(self.feats.to(dtype))

    def float(self) -> SparseTensor:
        return self.type(torch.float32)

    def __getitem__(self, index: int) -> SparseTensor:
        """Batch element `index`, renumbered as batch 0."""
        sl = self.layout[index]
        coords = self.coords[sl].clone()
        coords[:, 0] = 0
        return SparseTensor(self.feats[sl], coords, 1)

    def per_sample(self, other: torch.Tensor) -> torch.Tensor:
        """Expand a `[B, ...]` or `[1, ...]` tensor to one row per voxel."""
        if other.shape[0] == 1:
            return other.expand(self.feats.shape[0], *other.shape[1:])
        return other[self.batch_index]

    # --- elementwise arithmetic (dense operands broadcast per sample) --------------------
    def _operand(self, other: Any) -> Any:
        if isinstance(other, SparseTensor):
            return other.feats
        if torch.is_tensor(other) and other.dim() >= 1 and other.shape[0] in (1, self.batch_size):
            if other.dim() == self.feats.dim():
                return self.per_sample(other)
        return other

    def __add__(self, other: Any) -> SparseTensor:
        return self.replace(self.feats + self._operand(other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> SparseTensor:
        return self.replace(self.feats - self._operand(other))

    def __rsub__(self, other: Any) -> SparseTensor:
        return self.replace(self._operand(other) - self.feats)

    def __mul__(self, other: Any) -> SparseTensor:
        return self.replace(self.feats * self._operand(other))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> SparseTensor:
        return self.replace(self.feats / self._operand(other))

    def __neg__(self) -> SparseTensor:
        return self.replace(-self.feats)

    def __repr__(self) -> str:
        return (
            f"SparseTensor(N={self.feats.shape[0]}, C={tuple(self.feats.shape[1:])}, "
            f"batch={self.batch_size}, dtype={self.dtype}, device={self.device})"
        )


def sparse_cat(tensors: list[SparseTensor], dim: int = -1) -> SparseTensor:
    """Concatenate features of tensors that share voxels; keeps the first tensor's coords."""
    return tensors[0].replace(torch.cat([t.feats for t in tensors], dim=dim))


def sample_std(x: SparseTensor) -> torch.Tensor:
    """Population std over all voxels and channels of each sample: `[B, 1]` in `x`'s dtype.

    Each sample's rows are contiguous, so every std is a plain reduction over one slice (float32,
    fixed order): the same bits at every call. A scatter (`index_add_`) would use atomic adds on
    CUDA, whose order, and so whose float32 rounding, changes from call to call.
    """
    feats = x.feats.reshape(x.feats.shape[0], -1).float()
    seqlens = x.seqlens
    if seqlens and min(seqlens) == max(seqlens) > 0:  # equal samples: one [B, L * C] reduction
        std = feats.reshape(len(seqlens), -1).std(dim=1, correction=0)
    else:
        std = feats.new_zeros(len(seqlens))  # an empty sample keeps 0
        for index, rows in enumerate(x.layout):
            if rows.stop > rows.start:
                std[index] = feats[rows].std(correction=0)
    return std[:, None].to(x.dtype)
