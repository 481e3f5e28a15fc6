"""`VoxelIndex`: constant-time row lookup of voxel coordinates `(batch, x, y, z)` on any device.

A two-level table: the grid is cut into 8^3 bricks; a dense table over the (coarse) brick grid maps
each occupied brick to a slot, and each slot holds the 512 row indices of its brick (-1 = empty). A
lookup is two gathers, with memory proportional to the occupied bricks — for surface-like voxel sets
a few bytes per voxel, even on 1536^3 grids. Queries may reach `reach` voxels outside the occupied
extent on every side (they report absent). Voxel sets too scattered for bricks to pay off fall back to
binary search over sorted int64 keys.
"""

from __future__ import annotations

import torch

BRICK_SHIFT = 3
BRICK = 1 << BRICK_SHIFT
BRICK_CELLS = BRICK**3
# Largest coarse brick grid (all batch elements) kept as a dense table (int64 entries, <= 256 MiB).
MAX_COARSE_CELLS = 2**25
# Bricks are used while their tables need at most this many entries per voxel (else sorted keys).
MAX_BRICK_ENTRIES_PER_VOXEL = 64


class VoxelIndex:
    """Row of each voxel of `coords [N, 4]` (non-negative, unique); `lookup` answers -1 for absent."""

    def __init__(self, coords: torch.Tensor, reach: int = 1) -> None:
        n = coords.shape[0]
        self.device = coords.device
        self.num_voxels = n
        if n >= 2**31 - 1:
            raise ValueError(f"too many voxels for int32 row indices: {n}")
        if n == 0:
            self.mode = "empty"
            return
        if int(coords.min()) < 0:
            raise ValueError("voxel coordinates must be non-negative")
        # Shift every axis so that the lowest query (-reach) lands at coordinate >= 0 of a whole brick.
        self.offset = -(-reach // BRICK) * BRICK
        batches, *extent = (coords.max(dim=0).values.to(torch.int64) + 1).tolist()
        self.batches = batches
        self.coarse = [((e - 1 + reach + self.offset) >> BRICK_SHIFT) + 1 for e in extent]
        self.fine_extent = [e + reach + self.offset for e in extent]
        rows = torch.arange(n, dtype=torch.int32, device=self.device)
        b, x, y, z = self._shifted(coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3])
        coarse_cells = batches * self.coarse[0] * self.coarse[1] * self.coarse[2]
        if coarse_cells <= MAX_COARSE_CELLS:
            brick_key = self._brick_key(b, x, y, z)
            bricks, brick_of_voxel = torch.unique(brick_key, return_inverse=True)
            if bricks.shape[0] * BRICK_CELLS <= max(2**20, MAX_BRICK_ENTRIES_PER_VOXEL * n):
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
        if batches * self.fine_extent[0] * self.fine_extent[1] * self.fine_extent[2] >= 2**62:
            raise ValueError(f"voxel grid {extent} x {batches} too large for 64-bit keys")
        self.sorted_keys, order = torch.sort(self._fine_key(b, x, y, z))
        if n > 1 and bool((self.sorted_keys[1:] == self.sorted_keys[:-1]).any()):
            raise ValueError("duplicate voxel coordinates; every voxel must appear once")
        self.order = order.to(torch.int32)

    # --- keys (written so that per-axis work stays on the per-axis tensors when broadcasting) ---
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
    def lookup(self, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Rows (int32, -1 = absent) of the voxels `(b, x, y, z)` (broadcastable integer tensors).

        Coordinates may lie up to `reach` outside `[0, max]` on each axis; `b` must be a valid batch.
        Box queries are cheap when each axis has its own broadcast dimension, e.g. `x [n, 3, 1, 1]`,
        `y [n, 1, 3, 1]`, `z [n, 1, 1, 3]`.
        """
        shape = torch.broadcast_shapes(b.shape, x.shape, y.shape, z.shape)
        if self.mode == "empty":
            return torch.full(shape, -1, dtype=torch.int32, device=self.device)
        b, x, y, z = self._shifted(b, x, y, z)
        if self.mode == "bricks":
            slot = torch.take(self.slot, self._brick_key(b, x, y, z))
            return torch.take(self.table, slot * BRICK_CELLS + self._local(x, y, z))
        q = self._fine_key(b, x, y, z)
        pos = torch.searchsorted(self.sorted_keys, q).clamp_max_(self.num_voxels - 1)
        return torch.where(torch.take(self.sorted_keys, pos) == q, torch.take(self.order, pos), -1)
