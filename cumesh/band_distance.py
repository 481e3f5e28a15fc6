"""Exact unsigned distance at the grid points near a triangle mesh, driven by the triangles.

Each triangle visits the integer grid points of its bounding box grown by the search radius; a cheap
plane-slab and bounding-sphere test discards most of them, the survivors get the exact point-triangle
distance, and every grid point keeps its minimum (sort + segment-min). Work is proportional to the
surface, never to `resolution^3`, and runs in chunks of a bounded number of (point, triangle) pairs, so
peak memory stays small for any mesh size. Batched torch: the same code on CPU and CUDA.
"""

from __future__ import annotations

import torch

from .bvh import closest_point_packed, pack_distance_face, pack_triangles, unpack_distance_face
from .sorted_lookup import lookup_sorted

_GPU_PAIR_BUDGET = 1 << 22  # (grid point, triangle) candidates per chunk on CUDA
_CPU_PAIR_BUDGET = 1 << 18
_CPU_KERNEL_CHUNK = 1 << 15
_GPU_KERNEL_CHUNK = 1 << 22
_FACE_BLOCK = (
    1 << 20
)  # faces prepared at a time (bounds the per-face tables)  # cache-sized pieces for the exact distance kernel on the CPU


_HASH_MULTIPLIER = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64 (Fibonacci hashing)


class KeyFilter:
    """A one-hash Bloom filter over sorted int64 keys: `maybe(keys)` is False only for keys not in the set.

    Testing tens of millions of candidate keys against the set by binary search costs ~20 random memory
    reads each; one table read first rejects most of them (about 1 in 16 false positives survive, then
    `searchsorted` confirms). The table has ~16 slots per key, at most 2^28 bytes.
    """

    def __init__(self, keys: torch.Tensor) -> None:
        self.bits = max(16, min(28, int(keys.numel() * 16).bit_length()))
        self.table = torch.zeros(1 << self.bits, dtype=torch.bool, device=keys.device)
        self.table[self._slot(keys)] = True

    def _slot(self, keys: torch.Tensor) -> torch.Tensor:
        return ((keys * _HASH_MULTIPLIER) >> (64 - self.bits)) & ((1 << self.bits) - 1)

    def maybe(self, keys: torch.Tensor) -> torch.Tensor:
        return self.table[self._slot(keys)]


def grid_keys(coords: torch.Tensor, n: int) -> torch.Tensor:
    """int64 key of integer grid points `[..., 3]` with coordinates in `[0, n]`."""
    return (coords[..., 0] * (n + 1) + coords[..., 1]) * (n + 1) + coords[..., 2]


def grid_coords(keys: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `grid_keys`."""
    m = n + 1
    return torch.stack([keys // (m * m), (keys // m) % m, keys % m], -1)


def _split_boxes(
    lo: torch.Tensor, size: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def segment_min(keys: torch.Tensor, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per distinct key, the minimum of `packed` (`pack_distance_face` keys)."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    best = torch.full((uniq.numel(),), torch.iinfo(torch.long).max, dtype=torch.long, device=keys.device)
    return uniq, best.scatter_reduce_(0, inverse, packed, reduce="amin")


def _search_block(
    vertices,
    faces,
    face_base,
    origin,
    cell,
    n,
    radius,
    only,
    only_filter,
    points,
    point_radius,
    found_keys,
    found_best,
) -> None:
    """`near_grid_distances` for one block of faces (ids offset by `face_base`): appends per-chunk minima."""
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
    reach = ((tris - centroid[:, None]) ** 2).sum(2).max(1).values.sqrt()
    normal = torch.linalg.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    length = normal.norm(dim=1, keepdim=True)
    normal = torch.where(length > 0, normal / length.clamp_min(1e-30), torch.zeros_like(normal))
    # per face: centroid, unit normal, radius of its bounding sphere, has a plane
    prefilter = torch.cat([centroid, normal, reach[:, None], (length > 0).to(dtype)], 1)
    del tris, centroid, reach, normal, length

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
    m = n + 1
    box_key = grid_keys(lo, n)
    box_yz, box_sz = size[:, 1] * size[:, 2], size[:, 2]
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
        if b1 <= b0:
            continue
        c_count = count[b0:b1]
        rep = torch.repeat_interleave(torch.arange(b1 - b0, device=device), c_count)
        local = torch.arange(rep.numel(), device=device) - (torch.cumsum(c_count, 0) - c_count).index_select(
            0, rep
        )
        rep += b0
        yz, sz = box_yz.index_select(0, rep), box_sz.index_select(0, rep)
        dx = local // yz
        rest = local - dx * yz
        dy = rest // sz
        dz = rest - dy * sz
        del local, rest, yz, sz
        keys = box_key.index_select(0, rep) + (dx * m + dy) * m + dz
        if only is not None:
            hit = torch.nonzero(only_filter.maybe(keys)).squeeze(1)
            keys, rep, dx, dy, dz = keys[hit], rep[hit], dx[hit], dy[hit], dz[hit]
            pos, found = lookup_sorted(only, keys)
            hit = torch.nonzero(found).squeeze(1)
            keys, rep, pos = keys[hit], rep[hit], pos[hit]
            dx, dy, dz = dx[hit], dy[hit], dz[hit]
        r = radius
        if points is not None:
            p = points.index_select(0, pos)
            if point_radius is not None:  # each point's own bound: fewer exact distances to compute
                r = point_radius.index_select(0, pos)
        else:
            p = origin + (lo.index_select(0, rep) + torch.stack([dx, dy, dz], 1)).to(dtype) * cell
        tri = owner.index_select(0, rep)
        del dx, dy, dz, rep
        t = prefilter.index_select(0, tri)
        rel = p - t[:, 0:3]
        plane = (rel * t[:, 3:6]).sum(1).abs()
        near = ((rel * rel).sum(1) < (t[:, 6] + r) ** 2) & ((plane < r) | (t[:, 7] == 0))
        idx = torch.nonzero(near).squeeze(1)
        p, tri, keys = p.index_select(0, idx), tri.index_select(0, idx), keys.index_select(0, idx)
        r_sq = radius_sq if not torch.is_tensor(r) else r.index_select(0, idx) ** 2
        step = _GPU_KERNEL_CHUNK if vertices.is_cuda else _CPU_KERNEL_CHUNK
        dist_sq = torch.cat(
            [
                closest_point_packed(p[s : s + step], packed.index_select(0, tri[s : s + step]))[0]
                for s in range(0, keys.numel(), step)
            ]
            or [p.new_zeros(0)]
        )
        ok = dist_sq < r_sq
        if bool(ok.any()):
            k, v = segment_min(keys[ok], pack_distance_face(dist_sq[ok], tri[ok] + face_base))
            found_keys.append(k)
            found_best.append(v)


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
    point_radius: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid points `g` in `[0, n]^3` (world `origin + g * cell`) closer than `radius` to the mesh.

    Returns `(keys [K] sorted int64 (see `grid_keys`), distance [K], face [K])`: the exact unsigned
    distance (computed in float32) and a closest face. With `only` (sorted keys), just those grid
    points are considered. With `points` too (`[len(only), 3]`), `only` names grid *cells* (cell `g`
    spans `origin + [g, g + 1) * cell`, `g` in `[0, n)^3`) each holding one query point, and the
    distances are those of the points; `point_radius` (`[len(only)]`, each at most `radius`) then gives each
    point its own, smaller search radius.
    """
    if points is not None and only is None:
        raise ValueError("points needs the sorted cell keys `only`")
    if point_radius is not None and points is None:
        raise ValueError("point_radius needs points")
    only_filter = None
    if only is not None:
        only = only.contiguous()
        only_filter = KeyFilter(only)
    device, dtype = vertices.device, vertices.dtype
    found_keys, found_best = [], []
    for f0 in range(0, faces.shape[0], _FACE_BLOCK):
        _search_block(
            vertices,
            faces[f0 : f0 + _FACE_BLOCK],
            f0,
            origin,
            cell,
            n,
            radius,
            only,
            only_filter,
            points,
            point_radius,
            found_keys,
            found_best,
        )
    if not found_keys:
        none = torch.zeros(0, dtype=torch.long, device=device)
        return none, torch.zeros(0, dtype=dtype, device=device), none
    keys, best = segment_min(torch.cat(found_keys), torch.cat(found_best))
    dist, face = unpack_distance_face(best, dtype)
    return keys, dist, face
