"""Submanifold sparse 3D convolution (stride 1, odd kernel) in pure PyTorch.

Semantics (the official FlexGEMM layout): weight `[Co, K, K, K, Ci]`, tap `(a, b, c)` multiplies the
input voxel at `(x + (a - K//2) d, y + (b - K//2) d, z + (c - K//2) d)`; outputs exist only at the
input voxels; absent neighbours contribute zero and neighbours never cross batch elements. It is a
cross-correlation, i.e. `nn.Conv3d(padding=K//2 * d)` on a zero-filled dense grid read back at the
active voxels.

Implementation: a neighbour map `[N, K^3]` (int32 row indices, -1 = absent) is built once per voxel
set with a `VoxelIndex` (two-level brick table, two gathers per lookup) and cached in the tensor's
`spatial_cache`, so every conv at one resolution shares it; above `NEIGHBOR_MAP_MAX_BYTES` only the
index is kept and each chunk's neighbours are looked up when needed. The convolution gathers the
`K^3` neighbour rows of a chunk of voxels into `[n, K^3 * Ci]` and multiplies by the flattened weight:
one GEMM per chunk, with the chunk size chosen so that the gathered block stays under
`GATHER_BUDGET_BYTES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from o_voxel.voxel_index import VoxelIndex

from .tensor import SparseTensor

# Upper bound on the temporary gathered neighbourhood block of one chunk, in bytes.
GATHER_BUDGET_BYTES = 256 * 2**20
# Neighbour lookups handle at most this many keys at once.
LOOKUP_CHUNK_KEYS = 2**23
# Neighbour maps up to this size are stored whole; larger voxel sets look neighbours up per chunk.
NEIGHBOR_MAP_MAX_BYTES = 512 * 2**20


def kernel_offsets(kernel_size: int, dilation: int = 1, device: torch.device | None = None) -> torch.Tensor:
    """`[K^3, 3]` int64 offsets in flat tap order `v = a*K*K + b*K + c` (x slowest)."""
    r = torch.arange(kernel_size, device=device, dtype=torch.int64) - kernel_size // 2
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    return grid * dilation


class SubmanifoldNeighbors:
    """Neighbour rows of a voxel set for a `K^3` kernel: `rows(start, stop) -> [stop - start, K^3]` int32.

    The whole map (`K^3` int32 per voxel) is stored when it fits `NEIGHBOR_MAP_MAX_BYTES`, so every
    conv at that resolution just slices it; larger sets (the finest decoder level, tens of millions of
    voxels) keep only the `VoxelIndex` and look each chunk up when a conv needs it.
    """

    def __init__(self, coords: torch.Tensor, kernel_size: int = 3, dilation: int = 1) -> None:
        self.coords = coords
        self.taps = kernel_size**3
        self.num_voxels = coords.shape[0]
        self.index = VoxelIndex(coords, reach=(kernel_size // 2) * dilation)
        # Per-axis offsets; the K^3 taps are their outer product (x slowest, as the flat tap order).
        self.axis_offsets = (
            torch.arange(kernel_size, device=coords.device, dtype=torch.int64) - kernel_size // 2
        ) * dilation
        self.full: torch.Tensor | None = None
        if self.num_voxels * self.taps * 4 <= NEIGHBOR_MAP_MAX_BYTES:
            self.full = self.lookup(0, self.num_voxels)

    def lookup(self, start: int, stop: int) -> torch.Tensor:
        """Look the neighbours of rows `start .. stop` up in the index (chunked)."""
        d = self.axis_offsets
        out = torch.empty(stop - start, self.taps, dtype=torch.int32, device=self.coords.device)
        step = max(1, LOOKUP_CHUNK_KEYS // self.taps)
        for s in range(start, stop, step):
            c = self.coords[s : min(s + step, stop)].to(torch.int64)
            box = self.index.lookup(
                c[:, 0, None, None, None],
                (c[:, 1, None] + d)[:, :, None, None],
                (c[:, 2, None] + d)[:, None, :, None],
                (c[:, 3, None] + d)[:, None, None, :],
            )
            out[s - start : s - start + c.shape[0]] = box.reshape(-1, self.taps)
        return out

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.full[start:stop] if self.full is not None else self.lookup(start, stop)


def submanifold_neighbor_map(coords: torch.Tensor, kernel_size: int = 3, dilation: int = 1) -> torch.Tensor:
    """Row index of every voxel's neighbour at every kernel tap: `[N, K^3]` int32, -1 where absent.

    `coords` is `[N, 4]` `(batch, x, y, z)` with non-negative, unique coordinates.
    """
    return SubmanifoldNeighbors(coords, kernel_size, dilation).rows(0, coords.shape[0])


def neighbors_of(x: SparseTensor, kernel_size: int = 3, dilation: int = 1) -> SubmanifoldNeighbors:
    """The cached neighbours of `x` (built on first use, shared by every conv on these voxels)."""
    key = f"submanifold_neighbors_k{kernel_size}_d{dilation}"
    neighbors = x.spatial_cache.get(key)
    if neighbors is None:
        neighbors = SubmanifoldNeighbors(x.coords, kernel_size, dilation)
        x.spatial_cache[key] = neighbors
    return neighbors


def neighbor_map(x: SparseTensor, kernel_size: int = 3, dilation: int = 1) -> torch.Tensor:
    """The whole `[N, K^3]` neighbour map of `x` (from its cached neighbours)."""
    return neighbors_of(x, kernel_size, dilation).rows(0, x.coords.shape[0])


NeighborRows = torch.Tensor | SubmanifoldNeighbors


def submanifold_conv3d_chunks(
    feats: torch.Tensor, neighbors: NeighborRows, weight: torch.Tensor, bias: torch.Tensor | None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield `(start, stop, out[start:stop])` of the convolution, one memory-bounded chunk at a time.

    Lets a caller consume the output without ever holding all of it (e.g. a subdivision that keeps
    only some channel blocks of each row). Arguments as `submanifold_conv3d`.
    """
    n, ci = feats.shape
    co = weight.shape[0]
    taps = weight[0].numel() // ci
    w = weight.reshape(co, taps * ci).t()
    rows = max(1, GATHER_BUDGET_BYTES // (taps * ci * feats.element_size()))
    for s in range(0, n, rows):
        e = min(s + rows, n)
        idx = neighbors[s:e] if isinstance(neighbors, torch.Tensor) else neighbors.rows(s, e)
        block = feats.index_select(0, idx.clamp_min(0).reshape(-1)).reshape(e - s, taps, ci)
        block.masked_fill_((idx < 0)[..., None], 0)
        block = block.reshape(e - s, taps * ci)
        yield s, e, (block @ w if bias is None else torch.addmm(bias, block, w))


def submanifold_conv3d(
    feats: torch.Tensor, neighbors: NeighborRows, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """`out[i] = bias + sum_v W[:, v, :] @ feats[nmap[i, v]]` (absent neighbours are zero).

    `feats [N, Ci]`, `neighbors` the `[N, T]` map `nmap` (or a `SubmanifoldNeighbors`), `weight [Co, T, Ci]`
    (any layout that reshapes to it), `bias [Co]`.
    """
    out = torch.empty(feats.shape[0], weight.shape[0], dtype=feats.dtype, device=feats.device)
    for s, e, chunk in submanifold_conv3d_chunks(feats, neighbors, weight, bias):
        out[s:e] = chunk
    return out


class SparseConv3d(nn.Module):
    """Submanifold sparse convolution with the official parameter layout (`weight [Co, K, K, K, Ci]`).

    The signature mirrors the official module; only stride 1 without explicit padding (the
    submanifold case, the only one the released models use) is supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        padding: int | None = None,
        bias: bool = True,
        indice_key: str | None = None,
    ) -> None:
        super().__init__()
        if stride != 1 or padding is not None:
            raise ValueError("SparseConv3d supports only submanifold convolution (stride 1, padding None)")
        if kernel_size % 2 != 1:
            raise ValueError(f"SparseConv3d needs an odd kernel size, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv initialisation (uniform with fan-in bound)."""
        fan_in = self.in_channels * self.kernel_size**3
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _prepare(self, x: SparseTensor) -> tuple[torch.Tensor, SubmanifoldNeighbors]:
        if x.feats.dim() != 2 or x.feats.shape[1] != self.in_channels:
            raise ValueError(f"SparseConv3d expects {self.in_channels} channels, got {tuple(x.feats.shape)}")
        return x.feats.to(self.weight.dtype), neighbors_of(x, self.kernel_size, self.dilation)

    def forward(self, x: SparseTensor) -> SparseTensor:
        feats, nmap = self._prepare(x)
        return x.replace(submanifold_conv3d(feats, nmap, self.weight, self.bias))

    def chunks(self, x: SparseTensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """The output feats of `forward(x)` as `(start, stop, rows)` chunks (see `submanifold_conv3d_chunks`)."""
        feats, nmap = self._prepare(x)
        return submanifold_conv3d_chunks(feats, nmap, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, bias={self.bias is not None}"
        )
