"""Channel <-> space resampling of sparse tensors (the decoders' subdivision up-sampling).

Child sub-index `k = dx + f*dy + f*f*dz` for the child at `(f*x + dx, f*y + dy, f*z + dz)` of a parent
at `(x, y, z)` (`dx` along `coords[:, 1]`, least significant). A parent's `f^3 * C` channels are `f^3`
consecutive blocks of `C`; block `k` belongs to child `k`. Children are emitted parent by parent in
input row order and, within a parent, by increasing `k` — the order every downstream tensor
(subdivision logits, texture voxels, mesh vertices) relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .tensor import SparseTensor


@dataclass
class Subdivision:
    """Which children of which parents exist.

    `source [M]` int64 is `parent_row * f^3 + k` per child (the row of the child's channel block in
    the parent features viewed as `[N * f^3, C]`); `coords [M, 4]` int32 are the child coordinates.
    """

    source: torch.Tensor
    coords: torch.Tensor
    factor: int

    def split(self, feats: torch.Tensor) -> torch.Tensor:
        """Channel block `k` of each parent's `feats [N, f^3 * C]` for every child: `[M, C]`."""
        blocks = self.factor**3
        if feats.shape[1] % blocks:
            raise ValueError(f"{feats.shape[1]} channels cannot be split into {blocks} children")
        flat = feats.reshape(feats.shape[0] * blocks, feats.shape[1] // blocks)
        return flat.index_select(0, self.source)

    def split_rows(self, feats: torch.Tensor, start: int) -> tuple[int, int, torch.Tensor]:
        """`split` for the parent rows `start .. start + len(feats)` only: `(lo, hi, children[lo:hi])`.

        Children are ordered by parent, so those of a row range are the contiguous range `lo:hi`.
        """
        blocks = self.factor**3
        bounds = torch.tensor([start * blocks, (start + feats.shape[0]) * blocks], device=self.source.device)
        lo, hi = torch.searchsorted(self.source, bounds).tolist()
        flat = feats.reshape(feats.shape[0] * blocks, feats.shape[1] // blocks)
        return lo, hi, flat.index_select(0, self.source[lo:hi] - start * blocks)


def child_offsets(factor: int, device: torch.device | None = None) -> torch.Tensor:
    """`[f^3, 3]` int32 offsets `(dx, dy, dz)` of child `k = dx + f*dy + f*f*dz`."""
    k = torch.arange(factor**3, device=device, dtype=torch.int32)
    return torch.stack([k % factor, (k // factor) % factor, k // (factor * factor)], dim=1)


def subdivide(coords: torch.Tensor, mask: torch.Tensor, factor: int = 2) -> Subdivision:
    """Children of the voxels `coords [N, 4]` selected by `mask [N, f^3]` (bool, True = child exists)."""
    blocks = factor**3
    if mask.dim() != 2 or mask.shape != (coords.shape[0], blocks):
        raise ValueError(
            f"subdivision mask must be [{coords.shape[0]}, {blocks}] (one flag per child), got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"subdivision mask must be bool, got {mask.dtype}")
    source = mask.reshape(-1).nonzero().squeeze(1)  # ascending: parent-major, then k
    parent = source // blocks
    k = source % blocks
    child = coords.index_select(0, parent).clone()
    child[:, 1:] = child[:, 1:] * factor + child_offsets(factor, coords.device).index_select(0, k)
    return Subdivision(source=source, coords=child, factor=factor)


def channel_to_spatial(x: SparseTensor, mask: torch.Tensor, factor: int = 2) -> SparseTensor:
    """Spread each parent's `f^3 * C` channels over its existing children (`C` channels each)."""
    sub = subdivide(x.coords, mask, factor)
    return SparseTensor(sub.split(x.feats), sub.coords, x.batch_size)


def spatial_to_channel(x: SparseTensor, factor: int = 2) -> SparseTensor:
    """Inverse of `channel_to_spatial`: gather children into their parent's channel blocks.

    Parents are ordered lexicographically by `(batch, x, y, z)`; absent children give zero blocks.
    """
    blocks = factor**3
    c = x.coords.to(torch.int64)
    parent = c.clone()
    parent[:, 1:] = torch.div(c[:, 1:], factor, rounding_mode="floor")
    k = (c[:, 1] % factor) + factor * (c[:, 2] % factor) + factor * factor * (c[:, 3] % factor)
    if c.shape[0] == 0:
        return SparseTensor(x.feats.new_zeros(0, blocks * x.feats.shape[1]), x.coords, x.batch_size)
    ext = (parent[:, 1:].max(dim=0).values + 1).tolist()
    key = ((parent[:, 0] * ext[0] + parent[:, 1]) * ext[1] + parent[:, 2]) * ext[2] + parent[:, 3]
    unique_keys, inverse = torch.unique(key, return_inverse=True)
    feats = x.feats.new_zeros(unique_keys.shape[0] * blocks, x.feats.shape[1])
    feats.index_copy_(0, inverse * blocks + k, x.feats)
    first = torch.full_like(unique_keys, c.shape[0]).scatter_reduce_(
        0, inverse, torch.arange(c.shape[0], device=c.device), reduce="amin"
    )
    coords = parent.index_select(0, first).to(torch.int32)
    return SparseTensor(feats.reshape(-1, blocks * x.feats.shape[1]), coords, x.batch_size)


class SparseChannel2Spatial(nn.Module):
    """Module form of `channel_to_spatial` (`forward(x, mask)`)."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
        return channel_to_spatial(x, mask, self.factor)


class SparseSpatial2Channel(nn.Module):
    """Module form of `spatial_to_channel`."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: SparseTensor) -> SparseTensor:
        return spatial_to_channel(x, self.factor)
