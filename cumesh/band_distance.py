"""Exact unsigned distance at the grid points near a triangle mesh, driven by the triangles.

Each triangle visits the integer grid points of its bounding box grown by the search radius; a cheap
plane-slab and bounding-sphere test discards most of them, the survivors get the exact point-triangle
distance, and every grid point keeps its minimum (sort + segment-min). Work is proportional to the
surface, never to `resolution^3`, and runs in chunks of a bounded number of (point, triangle) pairs, so
peak memory stays small for any mesh size. Batched torch: the same code on CPU and CUDA.
"""

from __future__ import annotations

import torch

from .bvh import closest_point_packed, pack_triangles

_GPU_PAIR_BUDGET = 1 << 24  # (grid point, triangle) candidates per chunk on CUDA
_CPU_PAIR_BUDGET = 1 << 20
_CPU_KERNEL_CHUNK = 1 << 15  # cache-sized pieces for the exact distance kernel on the CPU


def grid_keys(coords: torch.Tensor, n: int) -> torch.Tensor:
    """int64 key of integer grid points `[..., 3]` with coordinates in `[0, n]`."""
    return (coords[..., 0] * (n + 1) + coords[..., 1]) * (n + 1) + coords[..., 2]


def grid_coords(keys: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `grid_keys`."""
    m = n + 1
    return torch.stack([keys // (m * m), (keys // m) % m, keys % m], -1)


def _split_boxes(lo: torch.Tensor, size: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut boxes holding more than `budget` points into x-slabs: `(owner, lo, size)` of the pieces."""
    slab = (budget // (size[:, 1] * size[:, 2]).clamp_min(1)).clamp_min(1)
    pieces = torch.where(size[:, 0] > 0, -(-size[:, 0] // slab), torch.zeros_like(slab))
    owner = torch.repeat_interleave(torch.arange(lo.shape[0], device=lo.device), pieces)
    first = torch.cumsum(pieces, 0) - pieces
    j = torch.arange(owner.numel(), device=lo.device) - first[owner]
    lo2, size2 = lo[owner].clone(), size[owner].clone()
    lo2[:, 0] += j * slab[owner]
    size2[:, 0] = torch.minimum(slab[owner], size[owner, 0] - j * slab[owner])
    return owner, lo2, size2


def _segment_min(keys: torch.Tensor, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per distinct key, the minimum of `packed` (squared distance bits << 32 | face id)."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    best = torch.full((uniq.numel(),), torch.iinfo(torch.long).max, dtype=torch.long, device=keys.device)
    return uniq, best.scatter_reduce_(0, inverse, packed, reduce="amin")


@torch.no_grad()
def near_grid_distances(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    origin: torch.Tensor,
    cell: float,
    n: int,
    radius: float,
    only: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid points `g` in `[0, n]^3` (world `origin + g * cell`) closer than `radius` to the mesh.

    Returns `(keys [K] sorted int64 (see `grid_keys`), distance [K], face [K])`: the exact unsigned
    distance (computed in float32) and a closest face. With `only` (sorted keys), just those grid
    points are considered. With `points` too (`[len(only), 3]`), `only` names grid *cells* (cell `g`
    spans `origin + [g, g + 1) * cell`, `g` in `[0, n)^3`) each holding one query point, and the
    distances are those of the points.
    """
    if points is not None and only is None:
        raise ValueError("points needs the sorted cell keys `only`")
    device, dtype = vertices.device, vertices.dtype
    tris = vertices[faces]
    packed = pack_triangles(tris)
    tmin, tmax = tris.min(1).values, tris.max(1).values
    if points is None:
        lo = torch.ceil((tmin - radius - origin) / cell).long().clamp(0, n)
        hi = torch.floor((tmax + radius - origin) / cell).long().clamp(-1, n)
    else:
        lo = torch.floor((tmin - radius - origin) / cell).long().clamp(0, n - 1)
        hi = torch.floor((tmax + radius - origin) / cell).long().clamp(-1, n - 1)
    size = (hi - lo + 1).clamp_min(0)
    size = torch.where((size > 0).all(1, keepdim=True), size, torch.zeros_like(size))
    centroid = tris.mean(1)
    reach = ((tris - centroid[:, None]) ** 2).sum(2).max(1).values.sqrt() + radius
    normal = torch.linalg.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    length = normal.norm(dim=1, keepdim=True)
    has_plane = length[:, 0] > 0
    normal = torch.where(length > 0, normal / length.clamp_min(1e-30), torch.zeros_like(normal))

    budget = _GPU_PAIR_BUDGET if vertices.is_cuda else _CPU_PAIR_BUDGET
    owner, lo, size = _split_boxes(lo, size, budget)
    count = size.prod(1)
    keep = count > 0
    owner, lo, size, count = owner[keep], lo[keep], size[keep], count[keep]
    ends = torch.cumsum(count, 0)
    total = int(ends[-1]) if ends.numel() else 0
    marks = torch.arange(budget, max(total, budget), budget, device=device)
    cuts = torch.searchsorted(ends, marks, right=True).tolist()
    bounds = [0] + sorted(set(cuts) - {0, owner.numel()}) + [owner.numel()]
    radius_sq = radius * radius
    found_keys, found_best = [], []
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
        if b1 <= b0:
            continue
        c_lo, c_size, c_count, c_tri = lo[b0:b1], size[b0:b1], count[b0:b1], owner[b0:b1]
        rep = torch.repeat_interleave(torch.arange(b1 - b0, device=device), c_count)
        local = torch.arange(rep.numel(), device=device) - (torch.cumsum(c_count, 0) - c_count)[rep]
        yz = (c_size[:, 1] * c_size[:, 2])[rep]
        sz = c_size[rep, 2]
        rest = local % yz
        coords = c_lo[rep] + torch.stack([local // yz, rest // sz, rest % sz], 1)
        tri = c_tri[rep]
        del rep, local, yz, sz, rest
        keys = grid_keys(coords, n)
        if only is not None:
            pos = torch.searchsorted(only, keys).clamp_max(max(only.numel() - 1, 0))
            hit = only[pos] == keys if only.numel() else torch.zeros_like(keys, dtype=torch.bool)
            coords, tri, keys = coords[hit], tri[hit], keys[hit]
            p = points[pos[hit]] if points is not None else origin + coords.to(dtype) * cell
        else:
            p = origin + coords.to(dtype) * cell
        rel = p - centroid[tri]
        near = (rel * rel).sum(1) < reach[tri] ** 2
        plane = (rel * normal[tri]).sum(1).abs()
        near &= (plane < radius) | ~has_plane[tri]
        idx = torch.nonzero(near).squeeze(1)
        p, tri, keys = p[idx], tri[idx], keys[idx]
        step = max(keys.numel(), 1) if vertices.is_cuda else _CPU_KERNEL_CHUNK
        dist_sq = torch.cat([closest_point_packed(p[s : s + step], packed[tri[s : s + step]])[0]
                             for s in range(0, keys.numel(), step)] or [p.new_zeros(0)])
        ok = dist_sq < radius_sq
        if bool(ok.any()):
            bits = dist_sq[ok].float().view(torch.int32).long()  # non-negative floats sort like their bits
            k, v = _segment_min(keys[ok], (bits << 32) | tri[ok])
            found_keys.append(k)
            found_best.append(v)
    if not found_keys:
        none = torch.zeros(0, dtype=torch.long, device=device)
        return none, torch.zeros(0, dtype=dtype, device=device), none
    keys, best = _segment_min(torch.cat(found_keys), torch.cat(found_best))
    dist = (best >> 32).int().view(torch.float32).to(dtype).sqrt()
    return keys, dist, best & 0xFFFFFFFF
