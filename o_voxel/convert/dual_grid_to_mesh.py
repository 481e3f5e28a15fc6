"""Flexible dual grid -> triangle mesh (`flexible_dual_grid_to_mesh`), vectorised PyTorch on any device.

Every active voxel contributes one vertex, `(coords + dual_vertices) * voxel_size + aabb_min`. Each
voxel owns the three grid edges at its maximum corner; for every flagged edge (voxel rows in order,
then axes x, y, z) the four voxels around that edge form a quad if all four are active. Quads are
split into two triangles along the diagonal with the larger split-weight product (`w0*w2 > w1*w3`
picks `q0-q2`), or, without split weights, with the official "min-angle" rule — which as released
keeps the `q0-q2` diagonal unless triangle `(q0, q1, q2)` is exactly degenerate. `train=True` instead
adds a weighted centre vertex per quad and fans four triangles around it.

Voxel lookup uses `o_voxel.voxel_index.VoxelIndex` (no hash map, no CUDA extension).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from o_voxel.voxel_index import VoxelIndex

# Offsets of the four voxels around the edge owned by a voxel, per axis, in quad order.
EDGE_QUAD_OFFSETS = (
    ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)),  # x edge
    ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),  # y edge
    ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)),  # z edge
)
SPLIT_02 = (0, 1, 2, 0, 2, 3)  # diagonal q0-q2
SPLIT_13 = (0, 1, 3, 3, 1, 2)  # diagonal q1-q3
FAN = (0, 1, 4, 1, 2, 4, 2, 3, 4, 3, 0, 4)  # around the centre vertex (index 4)

# Quads processed at once (bounds the temporary lookup tensors on large grids).
QUAD_CHUNK = 2**22

VectorLike = float | int | Sequence[float] | np.ndarray | torch.Tensor


def _as_vector(value: VectorLike, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    t = t.to(device=device, dtype=dtype).reshape(-1)
    if t.numel() == 1:
        t = t.expand(3).clone()
    if t.numel() != 3:
        raise ValueError(f"{name} must be a scalar or 3 values, got {t.numel()} values")
    return t


def _grid_geometry(aabb, voxel_size, grid_size, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(aabb [2, 3] float32, voxel_size [3] float32, grid_size [3] int64)` as the official rules."""
    if aabb is None:
        raise ValueError("aabb is required: [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
    box = torch.as_tensor(np.asarray(aabb) if not torch.is_tensor(aabb) else aabb)
    box = box.to(device=device, dtype=torch.float32)
    if box.shape != (2, 3):
        raise ValueError(f"aabb must be [2, 3] (min corner, max corner), got {tuple(box.shape)}")
    if not bool((box[1] > box[0]).all()):
        raise ValueError(f"aabb max corner must exceed its min corner, got {box.tolist()}")
    if voxel_size is not None:
        vs = _as_vector(voxel_size, "voxel_size", torch.float32, device)
        if not bool((vs > 0).all()):
            raise ValueError(f"voxel_size must be positive, got {vs.tolist()}")
        gs = ((box[1] - box[0]) / vs).round().to(torch.int64)
    elif grid_size is not None:
        gs = _as_vector(grid_size, "grid_size", torch.int64, device)
        if not bool((gs > 0).all()):
            raise ValueError(f"grid_size must be positive, got {gs.tolist()}")
        vs = (box[1] - box[0]) / gs.to(torch.int32)
    else:
        raise ValueError("either voxel_size or grid_size must be given")
    return box, vs, gs


def _check_inputs(coords, dual_vertices, intersected_flag, split_weight, train) -> None:
    n = coords.shape[0] if coords.dim() == 2 else -1
    if coords.dim() != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be [N, 3] voxel indices (x, y, z), got {tuple(coords.shape)}")
    if coords.dtype.is_floating_point or coords.dtype == torch.bool:
        raise ValueError(f"coords must be an integer tensor, got {coords.dtype}")
    if dual_vertices.shape != (n, 3):
        raise ValueError(f"dual_vertices must be [{n}, 3], got {tuple(dual_vertices.shape)}")
    if intersected_flag.shape != (n, 3):
        raise ValueError(f"intersected_flag must be [{n}, 3], got {tuple(intersected_flag.shape)}")
    if split_weight is not None and split_weight.reshape(-1).shape[0] != n:
        raise ValueError(f"split_weight must have one value per voxel ({n}), got {tuple(split_weight.shape)}")
    if train and split_weight is None:
        raise ValueError("train=True needs split_weight")
    devices = {t.device for t in (coords, dual_vertices, intersected_flag) if t is not None}
    if split_weight is not None:
        devices.add(split_weight.device)
    if len(devices) > 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(str(d) for d in devices)}")


def find_quads(coords: torch.Tensor, intersected_flag: torch.Tensor, grid_size: torch.Tensor) -> torch.Tensor:
    """Vertex indices `[L, 4]` (int64) of the quads around every flagged edge whose 4 voxels exist.

    `coords` lie in the grid `[0, grid_size)`, so a corner outside it is never a voxel.
    """
    device = coords.device
    if coords.shape[0] == 0:
        return torch.empty(0, 4, dtype=torch.int64, device=device)
    index = VoxelIndex(coords, reach=1)  # the quad corners lie at offsets 0 or +1 of a voxel
    offsets = torch.tensor(EDGE_QUAD_OFFSETS, dtype=torch.int64, device=device)  # [3, 4, 3]
    edges = intersected_flag.to(torch.bool).reshape(-1).nonzero().squeeze(1)  # row-major (voxel, axis)
    c = coords.to(torch.int64)
    quads = []
    for s in range(0, edges.shape[0], QUAD_CHUNK):
        e = edges[s : s + QUAD_CHUNK]
        corner = c.index_select(0, e // 3)[:, None, :] + offsets.index_select(0, e % 3)  # [m, 4, 3]
        rows = index.lookup(corner[..., 0], corner[..., 1], corner[..., 2])
        quads.append(rows[(rows >= 0).all(dim=1)].to(torch.int64))
    return torch.cat(quads) if quads else torch.empty(0, 4, dtype=torch.int64, device=device)


def _triangle_normal(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    pa = v[a]
    return torch.linalg.cross(v[b] - pa, v[c] - pa, dim=-1)


def flexible_dual_grid_to_mesh(
    coords: torch.Tensor,
    dual_vertices: torch.Tensor,
    intersected_flag: torch.Tensor,
    split_weight: torch.Tensor | None,
    aabb,
    voxel_size: VectorLike | None = None,
    grid_size: VectorLike | None = None,
    train: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh of a flexible dual grid: `(vertices [N(+L), 3] float32, faces [F, 3])`.

    `coords [N, 3]` voxel indices, `dual_vertices [N, 3]` offsets in voxel units, `intersected_flag
    [N, 3]` bool (x, y, z edges), `split_weight [N, 1]` or None, `aabb [[min], [max]]`, and one of
    `voxel_size` / `grid_size`. Faces are int32 (int64 with `train=True`, as the official function).
    """
    _check_inputs(coords, dual_vertices, intersected_flag, split_weight, train)
    device = coords.device
    box, vs, gs = _grid_geometry(aabb, voxel_size, grid_size, device)
    n = coords.shape[0]
    if n and (bool((coords < 0).any()) or bool((coords.to(torch.int64) >= gs).any())):
        raise ValueError(f"coords must lie inside the grid [0, {gs.tolist()})")
    vertices = (coords.float() + dual_vertices.float()) * vs + box[0]
    quads = find_quads(coords, intersected_flag, gs)
    if train:
        w = split_weight.reshape(-1).float()[quads]
        w02, w13 = (w[:, 0] * w[:, 2])[:, None], (w[:, 1] * w[:, 3])[:, None]
        qv = vertices[quads]
        mid02 = (qv[:, 0] + qv[:, 2]) / 2
        mid13 = (qv[:, 1] + qv[:, 3]) / 2
        centre = (w02 * mid02 + w13 * mid13) / (w02 + w13)
        vertices = torch.cat([vertices, centre], dim=0)
        centre_idx = torch.arange(n, n + quads.shape[0], dtype=torch.int64, device=device)
        fan = torch.tensor(FAN, device=device)
        faces = torch.cat([quads, centre_idx[:, None]], dim=1)[:, fan].reshape(-1, 3)
        return vertices, faces
    if split_weight is not None:
        w = split_weight.reshape(-1)[quads]
        use_02 = w[:, 0] * w[:, 2] > w[:, 1] * w[:, 3]
    else:
        # The released min-angle rule reduces to: keep q0-q2 unless triangle (q0, q1, q2) is degenerate.
        normal = _triangle_normal(vertices, quads[:, 0], quads[:, 1], quads[:, 2])
        use_02 = (normal * normal).sum(dim=1) > 0
    split_02 = torch.tensor(SPLIT_02, device=device)
    split_13 = torch.tensor(SPLIT_13, device=device)
    faces = torch.where(use_02[:, None], quads[:, split_02], quads[:, split_13])
    return vertices, faces.reshape(-1, 3).to(torch.int32)
