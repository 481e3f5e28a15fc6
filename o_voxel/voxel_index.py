"""`VoxelIndex`: constant-time row lookup of sparse voxel coordinates on any device.

The one voxel lookup of the project: the sparse convolution's neighbour maps (`trellis2.modules.sparse`,
coordinates `(batch, x, y, z)`), the attribute volume's trilinear sampling (`o_voxel.attributes`) and
the dual-grid quad search (`o_voxel.convert.dual_grid_to_mesh`, coordinates `(x, y, z)`) all use it.

A two-level table: the grid is cut into 8^3 bricks; a dense table over the (coarse) brick grid maps
each occupied brick to a slot, and each slot holds the 512 row indices of its brick (-1 = empty). A
lookup is two gathers, with memory proportional to the occupied bricks — for surface-like voxel sets
a few bytes per voxel, even on 1536^3 grids. Voxel sets too scattered for bricks to pay off (or whose
brick grid is too large) fall back to binary search over sorted int64 keys (`cumesh.sorted_lookup`).
"""

from __future__ import annotations

import torch

from cumesh.sorted_lookup import lookup_sorted

BRICK_SHIFT = 3
BRICK = 1 << BRICK_SHIFT
BRICK_CELLS = BRICK**3
# Largest coarse brick grid (all batch elements) kept as a dense table (int64 entries, <= 256 MiB).
MAX_COARSE_CELLS = 2**25
# Bricks are used while their tables need at most this many entries per voxel (else sorted keys).
MAX_BRICK_ENTRIES_PER_VOXEL = 64
MODES = ("bricks", "sorted")


class VoxelIndex:
    """Row of each voxel of `coords [N, 4]` `(batch, x, y, z)` or `[N, 3]` `(x, y, z)` (non-negative,
    unique integers); lookups answer -1 for absent voxels.

    `lookup` takes one broadcastable tensor per column and accepts spatial coordinates up to `reach`
    outside `[0, max]` (the neighbourhoods of a convolution); `find` takes coordinate rows and accepts
    any integers. `mode` forces `"bricks"` or `"sorted"` (default: chosen by size and scatter).
    """

    def __init__(self, coords: torch.Tensor, reach: int = 1, mode: str | None = None) -> None:
        if coords.ndim != 2 or coords.shape[1] not in (3, 4):
            raise ValueError(f"voxel coordinates must have shape [N, 3] or [N, 4], got {tuple(coords.shape)}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown VoxelIndex mode {mode!r}; use one of {MODES}")
        if reach < 0:
            raise ValueError(f"reach must be non-negative, got {reach}")
        n = coords.shape[0]
        self.device = coords.device
        self.num_voxels = n
        self.columns = coords.shape[1]
        if n >= 2**31 - 1:
            raise ValueError(f"too many voxels for int32 row indices: {n}")
        if n == 0:
            self.mode = "empty"
            return
        if int(coords.min()) < 0:
            raise ValueError("voxel coordinates must be non-negative")
        # Shift every axis so that the lowest query (-reach) lands at coordinate >= 0 of a whole brick.
        self.offset = -(-reach // BRICK) * BRICK
        self.extent = (coords.max(dim=0).values.to(torch.int64) + 1).tolist()  # per column
        self.batches, *spatial = self.extent if self.columns == 4 else [1, *self.extent]
        self.coarse = [((e - 1 + reach + self.offset) >> BRICK_SHIFT) + 1 for e in spatial]
        self.fine_extent = [e + reach + self.offset for e in spatial]
        rows = torch.arange(n, dtype=torch.int32, device=self.device)
        b, x, y, z = self._shifted(*self._axes(coords.unbind(1)))
        coarse_cells = self.batches * self.coarse[0] * self.coarse[1] * self.coarse[2]
        if mode == "bricks" or (mode is None and coarse_cells <= MAX_COARSE_CELLS):
            brick_key = self._brick_key(b, x, y, z)
            bricks, brick_of_voxel = torch.unique(brick_key, return_inverse=True)
            if mode == "bricks" or bricks.shape[0] * BRICK_CELLS <= max(
                2**20, MAX_BRICK_ENTRIES_PER_VOXEL * n
            ):
                self.mode = "bricks"
                # Unoccupied bricks point at one extra, all-empty brick: no masking at lookup time.
                nb = bricks.shape[0]
                self.slot = torch.full((coarse_cells,), nb, dtype=torch.int64, device=self.device)
                self.slot[bricks] = torch.arange(nb, dtype=torch.int64, device=self.device)
                cell = brick_of_voxel * BRICK_CELLS + self._local(x, y, z)
                self.table = torch.full(((nb + 1) * BRICK_CELLS,), -1, dtype=torch.int32, device=self.device)
                self.table[cell] = rows
                if not torch.equal(self.table[cell], rows):
                    raise ValueError("duplicate voxel coordinates; every voxel must appear once")
                return
        self.mode = "sorted"
        if self.batches * self.fine_extent[0] * self.fine_extent[1] * self.fine_extent[2] >= 2**62:
            raise ValueError(f"voxel grid {spatial} x {self.batches} too large for 64-bit keys")
        self.sorted_keys, order = torch.sort(self._fine_key(b, x, y, z))
        if n > 1 and bool((self.sorted_keys[1:] == self.sorted_keys[:-1]).any()):
            raise ValueError("duplicate voxel coordinates; every voxel must appear once")
        self.order = order.to(torch.int32)

    # --- keys (written so that per-axis work stays on the per-axis tensors when broadcasting) ---
    def _axes(self, axes: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """`(b, x, y, z)` from one tensor per column (batch 0 for `(x, y, z)` indexes)."""
        if len(axes) != self.columns:
            raise ValueError(f"this index has {self.columns} coordinate columns, got {len(axes)} axes")
        if self.columns == 3:
            return (torch.zeros((), dtype=torch.int64, device=axes[0].device), *axes)
        return axes

    def _shifted(self, b, x, y, z):
        o = self.offset
        return b.to(torch.int64), x.to(torch.int64) + o, y.to(torch.int64) + o, z.to(torch.int64) + o

    def _brick_key(self, b, x, y, z):
        cx, cy, cz = self.coarse
        s = BRICK_SHIFT
        return (b * cx + (x >> s)) * (cy * cz) + (y >> s) * cz + (z >> s)

    @staticmethod
    def _local(x, y, z):
        m = BRICK - 1
        return ((x & m) << (2 * BRICK_SHIFT)) + ((y & m) << BRICK_SHIFT) + (z & m)

    def _fine_key(self, b, x, y, z):
        fx, fy, fz = self.fine_extent
        return (b * fx + x) * (fy * fz) + y * fz + z

    # --- queries ---------------------------------------------------------------------------
    def lookup(self, *axes: torch.Tensor) -> torch.Tensor:
        """Rows (int32, -1 = absent) of the voxels given by one broadcastable integer tensor per column.

        Spatial coordinates may lie up to `reach` outside `[0, max]`; a batch must be a valid one.
        Box queries are cheap when each axis has its own broadcast dimension, e.g. `x [n, 3, 1, 1]`,
        `y [n, 1, 3, 1]`, `z [n, 1, 1, 3]`.
        """
        shape = torch.broadcast_shapes(*(a.shape for a in axes))
        if self.mode == "empty":
            return torch.full(shape, -1, dtype=torch.int32, device=self.device)
        b, x, y, z = self._shifted(*self._axes(axes))
        if self.mode == "bricks":
            slot = torch.take(self.slot, self._brick_key(b, x, y, z))
            return torch.take(self.table, slot * BRICK_CELLS + self._local(x, y, z))
        pos, found = lookup_sorted(self.sorted_keys, self._fine_key(b, x, y, z))
        return torch.where(found, torch.take(self.order, pos), -1)

    def find(self, coords: torch.Tensor) -> torch.Tensor:
        """Rows (int32, -1 = absent) of coordinate rows `coords [..., columns]`; any integers are allowed."""
        if coords.shape[-1] != self.columns:
            raise ValueError(f"queries must have {self.columns} columns, got shape {tuple(coords.shape)}")
        if self.mode == "empty":
            return torch.full(coords.shape[:-1], -1, dtype=torch.int32, device=coords.device)
        coords = coords.to(torch.int64)
        upper = torch.tensor(self.extent, dtype=torch.int64, device=coords.device)
        inside = ((coords >= 0) & (coords < upper)).all(-1)
        rows = self.lookup(*torch.where(inside[..., None], coords, 0).unbind(-1))
        return torch.where(inside, rows, -1)


__all__ = ["VoxelIndex"]
