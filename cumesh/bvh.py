"""Exact closest point on a triangle mesh: distance, face id and barycentrics for many query points.

Structure: triangles are binned into a hierarchy of uniform grids (cell sizes h, 2h, 4h, ...; each level
holds every triangle whose bounding box overlaps the cell). A query visits cells in Chebyshev rings
around its own cell, skipping cells whose box is farther than the best distance found so far, and stops
once no unvisited cell can hold anything closer; points still open after a few rings continue on the next
coarser level. Triangles much larger than the typical one live in a separate, coarser structure so they
do not blow up the fine grid. The search is exhaustive, so the result is the exact closest triangle up to
float rounding (ties between equidistant triangles are broken by the lower face id within one search).
All work is batched torch code: the same on CPU and CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sorted_lookup import lookup_sorted
from .validation import check_mesh, check_points

_RINGS_PER_LEVEL = 2
_PAIR_BUDGET = 4_000_000
_CPU_CHUNK = 1 << 15
_LEVEL_RATIO = 2
_BIG_TRIANGLE_CELLS = 4  # triangles spanning more cells per axis go to a coarser tier


def pack_triangles(tris: torch.Tensor) -> torch.Tensor:
    """Per-triangle data `[F, 13]` for the closest-point kernel: a, ab, ac, |ab|^2, ab.ac, |ac|^2, degenerate."""
    a, ab, ac = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    aa, bc, cc = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    cross_sq = (torch.linalg.cross(ab, ac) ** 2).sum(1)
    degenerate = (cross_sq <= 1e-12 * aa * cc).to(tris.dtype)
    return torch.cat([a, ab, ac, aa[:, None], bc[:, None], cc[:, None], degenerate[:, None]], 1)


def pack_distance_face(dist_sq: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """One int64 per (squared distance, face id) whose minimum is the nearest face, ties to the lowest id.

    Non-negative float32 values order like their bit patterns, so the distance goes in the high 32 bits.
    """
    return (dist_sq.float().view(torch.int32).long() << 32) | face


def unpack_distance_face(packed: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """`(distance, face id)` from `pack_distance_face` keys (the distance, not its square)."""
    return (packed >> 32).int().view(torch.float32).to(dtype).sqrt(), packed & 0xFFFFFFFF


def _safe_div(n: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    ok = d != 0
    return torch.where(ok, n / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(n)).clamp(0, 1)


def closest_point_packed(p: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest points of `p [N,3]` on packed triangles `t [N,13]`: `(dist_sq [N], uvw [N,3])`.

    Region-based (Voronoi) classification with the dot products rewritten in terms of the two per-pair
    products `ab.ap` and `ac.ap`; degenerate (zero-area) triangles never divide by zero: their closest
    point is taken on the best of their three edges.
    """
    a, ab, ac = t[:, 0:3], t[:, 3:6], t[:, 6:9]
    aa, bc, cc = t[:, 9], t[:, 10], t[:, 11]
    ap = p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    d3, d4, d5, d6 = d1 - aa, d2 - bc, d1 - bc, d2 - cc
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    v, w = _safe_div(vb, denom), _safe_div(vc, denom)
    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    # regions in reverse priority order, so the highest priority is applied last
    t_bc = _safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    m = (va <= 0) & (d4 >= d3) & (d5 >= d6)
    v, w = torch.where(m, 1 - t_bc, v), torch.where(m, t_bc, w)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    v, w = torch.where(m, zero, v), torch.where(m, _safe_div(d2, d2 - d6), w)
    m = (d6 >= 0) & (d5 <= d6)
    v, w = torch.where(m, zero, v), torch.where(m, one, w)
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    v, w = torch.where(m, _safe_div(d1, d1 - d3), v), torch.where(m, zero, w)
    m = (d3 >= 0) & (d4 <= d3)
    v, w = torch.where(m, one, v), torch.where(m, zero, w)
    m = (d1 <= 0) & (d2 <= 0)
    v, w = torch.where(m, zero, v), torch.where(m, zero, w)
    diff = ap - v[:, None] * ab - w[:, None] * ac
    dist_sq = (diff * diff).sum(1)
    uvw = torch.stack([1 - v - w, v, w], 1)
    degenerate = t[:, 12] > 0
    if bool(degenerate.any()):
        idx = torch.nonzero(degenerate).squeeze(1)
        apd, abd, acd = ap[idx], ab[idx], ac[idx]
        best_d, best_uvw = None, None
        # segments from a: (start offset from a, direction, corner ids)
        for start, seg, k0, k1 in ((None, abd, 0, 1), (abd, acd - abd, 1, 2), (acd, -acd, 2, 0)):
            rel = apd if start is None else apd - start
            s_par = _safe_div((rel * seg).sum(1), (seg * seg).sum(1))
            dd = ((rel - s_par[:, None] * seg) ** 2).sum(1)
            cand = torch.zeros(idx.shape[0], 3, dtype=p.dtype, device=p.device)
            cand[:, k0], cand[:, k1] = 1 - s_par, s_par
            if best_d is None:
                best_d, best_uvw = dd, cand
            else:
                better = dd < best_d
                best_d = torch.where(better, dd, best_d)
                best_uvw = torch.where(better[:, None], cand, best_uvw)
        dist_sq = dist_sq.index_put((idx,), best_d)
        uvw = uvw.index_put((idx,), best_uvw)
    return dist_sq, uvw


def closest_point_on_triangles(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """Closest points of `p [N,3]` on triangles `(a, b, c)` (each `[N,3]`): `(dist_sq [N], uvw [N,3])`."""
    return closest_point_packed(p, pack_triangles(torch.stack([a, b, c], 1)))


@dataclass
class _GridLevel:
    cell: float
    dims: torch.Tensor  # [3] int64
    cell_keys: torch.Tensor  # sorted occupied cell keys
    cell_start: torch.Tensor
    cell_count: torch.Tensor
    tri_ids: torch.Tensor  # triangle ids grouped by cell


def _ring_offsets(r: int, device) -> torch.Tensor:
    rng = torch.arange(-r, r + 1, device=device)
    off = torch.cartesian_prod(rng, rng, rng)
    return off[off.abs().max(1).values == r] if r > 0 else off


class _Tier:
    """Grid hierarchy over a subset `ids` of the triangles (global ids); oversized triangles go to `big`."""

    def __init__(self, tris: torch.Tensor, ids: torch.Tensor, cell_size: float | None):
        self.tris = tris
        self.device = tris.device
        self.dtype = tris.dtype
        self.brute: torch.Tensor | None = None
        self.big: _Tier | None = None
        if ids.numel() <= 64:
            self.brute = ids
            return
        t = tris[ids]
        tmin, tmax = t.min(1).values, t.max(1).values
        extent = (tmax - tmin).max(1).values
        self.origin = tmin.min(0).values
        span = float((tmax.max(0).values - self.origin).max())
        if cell_size is None:
            sample = extent[:: max(1, ids.numel() // 100_000)].float()
            cell_size = max(float(torch.quantile(sample, 0.9)), span / 2**20, 1e-30)
        big = extent > _BIG_TRIANGLE_CELLS * cell_size
        if bool(big.any()):
            self.big = _Tier(tris, ids[big], None)
            ids, tmin, tmax = ids[~big], tmin[~big], tmax[~big]
        # levels are built on first use: most near-surface queries never leave the finest one
        self._tmin, self._tmax, self._ids = tmin, tmax, ids
        self._level_specs: list[tuple[float, torch.Tensor]] = []
        h = cell_size
        while True:
            dims = torch.clamp(torch.ceil((tmax.max(0).values - self.origin) / h).long() + 1, min=1)
            self._level_specs.append((h, dims))
            if int(dims.max()) <= 8:
                break
            h *= _LEVEL_RATIO
        self._levels: dict[int, _GridLevel] = {}
        self.level(0)

    @property
    def num_levels(self) -> int:
        return len(self._level_specs)

    def level(self, i: int) -> _GridLevel:
        if i not in self._levels:
            h, dims = self._level_specs[i]
            self._levels[i] = self._build_level(self._tmin, self._tmax, self._ids, h, dims)
        return self._levels[i]

    def set_packed(self, packed: torch.Tensor) -> None:
        """Swap the raw triangles for the packed kernel data (shared by all tiers)."""
        self.tris = packed
        if self.big is not None:
            self.big.set_packed(packed)

    def _build_level(self, tmin, tmax, ids, h, dims) -> _GridLevel:
        lo = torch.minimum(torch.floor((tmin - self.origin) / h).long().clamp_min(0), dims - 1)
        hi = torch.maximum(torch.minimum(torch.floor((tmax - self.origin) / h).long(), dims - 1), lo)
        size = hi - lo + 1
        count = size.prod(1)
        stride = torch.stack([dims[1] * dims[2], dims[2], torch.ones_like(dims[2])])
        base = (lo * stride).sum(1)
        # offset of the l-th cell of a box of shape (sx, sy, sz), from a small table: no per-entry division
        s_max = int(size.max())
        shape_code = ((size[:, 0] - 1) * s_max + size[:, 1] - 1) * s_max + size[:, 2] - 1
        table = torch.zeros(s_max**3, s_max**3, dtype=torch.long, device=self.device)
        for sx in range(1, s_max + 1):
            for sy in range(1, s_max + 1):
                for sz in range(1, s_max + 1):
                    g = torch.stack(
                        torch.meshgrid(torch.arange(sx), torch.arange(sy), torch.arange(sz), indexing="ij"),
                        -1,
                    )
                    offs = (g.reshape(-1, 3).to(self.device) * stride).sum(1)
                    table[((sx - 1) * s_max + sy - 1) * s_max + sz - 1, : offs.numel()] = offs
        rep = torch.repeat_interleave(torch.arange(ids.shape[0], device=self.device), count)
        start = torch.cumsum(count, 0) - count
        local = torch.arange(rep.shape[0], device=self.device) - start[rep]
        key = base[rep] + table[shape_code[rep], local]
        if int(dims.prod()) < 2**31:
            key = key.int()  # sorting 32-bit keys is about twice as fast
        key, order = torch.sort(key)
        tri = ids[rep[order]]
        cell_keys, cell_count = torch.unique_consecutive(key, return_counts=True)
        cell_start = torch.cumsum(cell_count, 0) - cell_count
        return _GridLevel(h, dims, cell_keys.long(), cell_start, cell_count, tri)

    def query(self, points, best_d, best_f, best_uvw, limit_sq, stop_sq: float = -1.0):
        """Update `best_*` (squared distance, global face id, barycentrics) in place.

        Points whose best squared distance drops to `stop_sq` or below are not searched further.
        """
        if self.brute is not None:
            self._evaluate_all(points, best_d, best_f, best_uvw, limit_sq)
            return
        if self.big is not None:
            self.big.query(points, best_d, best_f, best_uvw, limit_sq, stop_sq)
        active = torch.arange(points.shape[0], device=self.device)
        if math.isfinite(limit_sq):
            active = self._near_candidates(points, active, limit_sq)
        if stop_sq >= 0:
            active = active[best_d[active] > stop_sq]
        for li in range(self.num_levels):
            level = self.level(li)
            last = li == self.num_levels - 1
            rings = int(level.dims.max()) + 1 if last else _RINGS_PER_LEVEL
            cell = torch.floor((points[active] - self.origin) / level.cell).long()
            cell = torch.minimum(cell.clamp_min(0), level.dims - 1)
            for r in range(rings + 1):
                if active.numel() == 0:
                    return
                self._visit_ring(points, active, cell, r, level, best_d, best_f, best_uvw, limit_sq)
                bound = self._unvisited_distance(points[active], cell, r, level) ** 2
                still = (best_d[active] > bound) & (limit_sq > bound) & (best_d[active] > stop_sq)
                active, cell = active[still], cell[still]

    def _unvisited_distance(self, p, cell, r, level) -> torch.Tensor:
        """Distance from each point to the nearest grid cell outside the visited (2r+1)^3 block."""
        lo_idx, hi_idx = cell - r, cell + r
        lo = self.origin + lo_idx.to(self.dtype) * level.cell
        hi = self.origin + (hi_idx + 1).to(self.dtype) * level.cell
        inf = torch.full_like(lo, math.inf)
        to_lo = torch.where(lo_idx > 0, p - lo, inf)  # nothing exists beyond the grid's own border
        to_hi = torch.where(hi_idx < level.dims - 1, hi - p, inf)
        bound = torch.minimum(to_lo, to_hi).min(1).values.clamp_min(0)
        return torch.maximum(bound, torch.full_like(bound, r * level.cell))

    def _near_candidates(self, points, active, limit_sq):
        """Drop points with no occupied cell within the distance limit (checked on one coarse level)."""
        limit = math.sqrt(limit_sq)
        index = next((i for i, (h, _) in enumerate(self._level_specs) if h >= limit), self.num_levels - 1)
        level = self.level(index)
        reach = min(max(1, math.ceil(limit / level.cell)), int(level.dims.max()))
        rng = torch.arange(-reach, reach + 1, device=self.device)
        offsets = torch.cartesian_prod(rng, rng, rng)
        keep = []
        step = max(1, _PAIR_BUDGET // (4 * offsets.shape[0]))
        for s in range(0, active.numel(), step):
            act = active[s : s + step]
            p = points[act]
            cell = torch.minimum(
                torch.floor((p - self.origin) / level.cell).long().clamp_min(0), level.dims - 1
            )
            cand = cell[:, None, :] + offsets[None]
            inside = ((cand >= 0) & (cand < level.dims)).all(2)
            box_lo = self.origin + cand.to(self.dtype) * level.cell
            gap = torch.clamp(box_lo - p[:, None, :], min=0) + torch.clamp(
                p[:, None, :] - (box_lo + level.cell), min=0
            )
            ok = inside & ((gap**2).sum(2) <= limit_sq)
            key = (cand[..., 0] * level.dims[1] + cand[..., 1]) * level.dims[2] + cand[..., 2]
            _, occupied = lookup_sorted(level.cell_keys, key)
            keep.append(act[(ok & occupied).any(1)])
        return torch.cat(keep) if keep else active

    def _visit_ring(self, points, active, cell, r, level, best_d, best_f, best_uvw, limit_sq):
        offsets = _ring_offsets(r, self.device)
        step = max(1, _PAIR_BUDGET // (4 * offsets.shape[0]))
        for s in range(0, active.numel(), step):
            act, cel = active[s : s + step], cell[s : s + step]
            cand = cel[:, None, :] + offsets[None]  # [n, k, 3]
            inside = ((cand >= 0) & (cand < level.dims)).all(2)
            p = points[act]
            box_lo = self.origin + cand.to(self.dtype) * level.cell
            gap = torch.clamp(box_lo - p[:, None, :], min=0) + torch.clamp(
                p[:, None, :] - (box_lo + level.cell), min=0
            )
            box_d = (gap**2).sum(2)
            keep = inside & (box_d < best_d[act][:, None]) & (box_d <= limit_sq)
            pi, oi = torch.nonzero(keep, as_tuple=True)
            if pi.numel() == 0:
                continue
            c = cand[pi, oi]
            key = (c[:, 0] * level.dims[1] + c[:, 1]) * level.dims[2] + c[:, 2]
            pos, found = lookup_sorted(level.cell_keys, key)
            pi, pos = pi[found], pos[found]
            if pi.numel() == 0:
                continue
            csum = torch.cumsum(level.cell_count[pos], 0)
            # cut the (point, cell) list into batches of at most ~_PAIR_BUDGET triangle pairs
            total = int(csum[-1])
            edges = [0, pi.numel()]
            if total > _PAIR_BUDGET:
                marks = torch.arange(_PAIR_BUDGET, total, _PAIR_BUDGET, device=self.device)
                cuts = torch.searchsorted(csum, marks).tolist()
                edges = [0] + sorted({min(int(x) + 1, pi.numel()) for x in cuts}) + [pi.numel()]
            for b0, b1 in zip(edges[:-1], edges[1:], strict=True):
                if b1 > b0:
                    self._evaluate_cells(
                        points, act[pi[b0:b1]], pos[b0:b1], level, best_d, best_f, best_uvw, limit_sq
                    )

    def _evaluate_cells(self, points, point_ids, cell_pos, level, best_d, best_f, best_uvw, limit_sq):
        counts = level.cell_count[cell_pos]
        rep = torch.repeat_interleave(torch.arange(point_ids.numel(), device=self.device), counts)
        start = torch.cumsum(counts, 0) - counts
        local = torch.arange(rep.numel(), device=self.device) - start[rep]
        tri = level.tri_ids[level.cell_start[cell_pos][rep] + local]
        # one slot per distinct point (the (point, cell) list is grouped by point)
        uniq, inverse = torch.unique_consecutive(point_ids, return_inverse=True)
        _evaluate_pairs(self.tris, points, uniq, inverse[rep], tri, best_d, best_f, best_uvw, limit_sq)

    def _evaluate_all(self, points, best_d, best_f, best_uvw, limit_sq):
        nf = self.brute.numel()
        step = max(1, _PAIR_BUDGET // nf)
        for s in range(0, points.shape[0], step):
            pid = torch.arange(s, min(s + step, points.shape[0]), device=self.device)
            local = torch.arange(pid.numel(), device=self.device).repeat_interleave(nf)
            _evaluate_pairs(
                self.tris,
                points,
                pid,
                local,
                self.brute.repeat(pid.numel()),
                best_d,
                best_f,
                best_uvw,
                limit_sq,
            )


def _evaluate_pairs(tris, points, point_ids, local, tri, best_d, best_f, best_uvw, limit_sq):
    """Exact distances for pairs (point `point_ids[local]`, triangle `tri`); keep each point's minimum.

    Ties are broken by the lower face id. Work is proportional to the pairs, not to all query points.
    """
    pid = point_ids[local]
    # on the CPU, cache-sized chunks are several times faster than one pass over millions of pairs
    chunk = pid.numel() if pid.is_cuda else _CPU_CHUNK
    ds, uvws = [], []
    for s in range(0, pid.numel(), chunk):
        d_c, uvw_c = closest_point_packed(points[pid[s : s + chunk]], tris[tri[s : s + chunk]])
        ds.append(d_c)
        uvws.append(uvw_c)
    d, uvw = (ds[0], uvws[0]) if len(ds) == 1 else (torch.cat(ds), torch.cat(uvws))
    ok = d <= limit_sq
    # lexicographic (distance, face id) minimum per point through one packed int64 key
    key = pack_distance_face(d, tri)
    key = torch.where(ok, key, torch.full_like(key, torch.iinfo(torch.long).max))
    best_key = torch.full(
        (point_ids.numel(),), torch.iinfo(torch.long).max, dtype=torch.long, device=d.device
    )
    best_key.scatter_reduce_(0, local, key, reduce="amin")
    win = ok & (key == best_key[local])
    g, d_w, tri_w = pid[win], d[win], tri[win]
    better = (d_w < best_d[g]) | ((d_w == best_d[g]) & (tri_w < best_f[g]))
    g = g[better]
    best_d[g] = d_w[better]
    best_f[g] = tri_w[better]
    best_uvw[g] = uvw[win][better]


class MeshBVH:
    """Closest-point queries on a fixed triangle mesh (see the module docstring for the guarantee)."""

    def __init__(self, vertices: torch.Tensor, faces: torch.Tensor, cell_size: float | None = None):
        vertices, faces = check_mesh(vertices, faces)
        self.vertices, self.faces = vertices, faces
        self.device, self.dtype = vertices.device, vertices.dtype
        self.num_faces = faces.shape[0]
        self._root = _Tier(vertices[faces], torch.arange(self.num_faces, device=self.device), cell_size)
        self._root.set_packed(pack_triangles(vertices[faces]))

    @torch.no_grad()
    def closest_point(self, points: torch.Tensor, max_distance: float = math.inf):
        """Closest point on the mesh for every query point.

        Returns `(distance [P], face_id [P] int64, uvw [P, 3])` on the mesh's device, with
        `closest = sum_k uvw[:, k] * V[F[face_id, k]]`; barycentrics are finite even for degenerate
        triangles. With a finite `max_distance`, points with nothing that close get `distance = inf`,
        `face_id = -1`, `uvw = 0` (and cost much less).
        """
        points = check_points(points).to(device=self.device, dtype=self.dtype)
        num = points.shape[0]
        best_d = torch.full((num,), math.inf, dtype=self.dtype, device=self.device)
        best_f = torch.full((num,), -1, dtype=torch.long, device=self.device)
        best_uvw = torch.zeros(num, 3, dtype=self.dtype, device=self.device)
        limit_sq = max_distance**2 if math.isfinite(max_distance) else math.inf
        self._root.query(points, best_d, best_f, best_uvw, limit_sq)
        return best_d.sqrt(), best_f, best_uvw

    @torch.no_grad()
    def within_distance(self, points: torch.Tensor, distance: float) -> torch.Tensor:
        """`[P]` bool: is some point of the mesh closer than `distance`? (exact; stops at the first hit)."""
        points = check_points(points).to(device=self.device, dtype=self.dtype)
        num = points.shape[0]
        best_d = torch.full((num,), math.inf, dtype=self.dtype, device=self.device)
        best_f = torch.full((num,), -1, dtype=torch.long, device=self.device)
        best_uvw = torch.zeros(num, 3, dtype=self.dtype, device=self.device)
        limit_sq = float(distance) ** 2
        self._root.query(points, best_d, best_f, best_uvw, limit_sq, stop_sq=limit_sq)
        return best_d < limit_sq
