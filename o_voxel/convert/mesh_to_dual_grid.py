"""Mesh -> flexible dual grid (O-Voxel geometry): active voxels, edge-crossing flags and QEF dual vertices.

A voxel is active when one of its 12 edges is crossed by the surface. Each crossing of a lattice line by a
triangle activates the 4 voxels around that line segment and flags the one that owns it (the voxel at the
minimum side in the two other axes). The dual vertex of a voxel minimises, inside the voxel's closed box,

    E(x) = sum_crossings (n.x + d)^2 + [face] sum_overlapping_triangles (n.x + d)^2
           + boundary_weight * sum_boundary_segments dist(x, line)^2 + regularization_weight * cnt * |x - mean|^2

(see `spec/ovoxel-export.md` section 1.5). Everything is vectorised in PyTorch on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from o_voxel.attributes import SparseVoxelGrid
from o_voxel.boxes import chunks_by_budget, enumerate_boxes
from o_voxel.validation import resolve_grid, validate_mesh


def _plane_quadrics(tri: torch.Tensor) -> torch.Tensor:
    """(F, 4, 4) quadric [n; d][n; d]^T of each triangle's plane; zero for zero-area triangles."""
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 1], dim=-1)
    length = n.norm(dim=-1, keepdim=True)
    n = torch.where(length > 0, n / length.clamp(min=1e-300), torch.zeros_like(n))
    nd = torch.cat([n, -(n * tri[:, 0]).sum(-1, keepdim=True)], dim=-1)
    return nd[:, :, None] * nd[:, None, :]


def edge_crossings(g: torch.Tensor, res: torch.Tensor, axis: int):
    """Crossings of lattice lines parallel to `axis` with triangles `g (F, 3, 3)` (voxel units).

    Returns (triangle index, crossing point in voxel units (M, 3), owner voxel (M, 3)).
    A lattice point on a shared triangle edge is assigned to exactly one triangle (closed upper/right
    boundaries, open lower/left ones), lattice planes on the grid boundary are never used.
    """
    b, c = (axis + 1) % 3, (axis + 2) % 3
    pb, pc, pa = g[:, :, b], g[:, :, c], g[:, :, axis]
    lo = torch.stack([torch.floor(pb.min(1).values) + 1, torch.floor(pc.min(1).values) + 1], -1)
    hi = torch.stack([torch.floor(pb.max(1).values), torch.floor(pc.max(1).values)], -1)
    lo = lo.clamp(min=1).to(torch.int64)
    hi = torch.minimum(hi.to(torch.int64), torch.stack([res[b], res[c]]) - 1)
    counts = (hi - lo + 1).clamp(min=0).prod(-1)
    tris, points, owners = [], [], []
    for start, end in chunks_by_budget(counts):
        owner, ij = enumerate_boxes(lo[start:end], hi[start:end])
        if owner.numel() == 0:
            continue
        owner = owner + start
        qb, qc = ij[:, 0].to(g.dtype), ij[:, 1].to(g.dtype)
        xb, xc = pb[owner], pc[owner]  # (P, 3)
        # edge k joins vertices k+1 -> k+2 (opposite vertex k); e_k(q) > 0 inside for a CCW triangle
        e0b, e0c = xb.roll(-1, 1), xc.roll(-1, 1)
        e1b, e1c = xb.roll(-2, 1), xc.roll(-2, 1)
        edge = (e1b - e0b) * (qc[:, None] - e0c) - (e1c - e0c) * (qb[:, None] - e0b)
        area2 = edge.sum(-1)
        orient = torch.sign(area2)
        edge = edge * orient[:, None]
        # inward normal of edge k (towards the triangle), used for the tie rule on the boundary
        nb = -(e1c - e0c) * orient[:, None]
        nc = (e1b - e0b) * orient[:, None]
        tie_ok = (nc < 0) | ((nc == 0) & (nb < 0))
        inside = ((edge > 0) | ((edge == 0) & tie_ok)).all(-1) & (area2 != 0)
        w = edge / area2.abs().clamp(min=1e-300)[:, None]
        ta = (w * pa[owner]).sum(-1)
        k = torch.floor(ta)
        keep = inside & (k >= 0) & (k < res[axis])
        owner, ij, ta, k = owner[keep], ij[keep], ta[keep], k[keep].to(torch.int64)
        point = torch.empty(owner.shape[0], 3, dtype=g.dtype, device=g.device)
        point[:, axis], point[:, b], point[:, c] = ta, ij[:, 0].to(g.dtype), ij[:, 1].to(g.dtype)
        vox = torch.empty(owner.shape[0], 3, dtype=torch.int64, device=g.device)
        vox[:, axis], vox[:, b], vox[:, c] = k, ij[:, 0] - 1, ij[:, 1] - 1
        tris.append(owner)
        points.append(point)
        owners.append(vox)
    if not tris:
        empty = torch.zeros(0, dtype=torch.int64, device=g.device)
        return empty, g.new_zeros((0, 3)), empty.new_zeros((0, 3))
    return torch.cat(tris), torch.cat(points), torch.cat(owners)


def _triangle_box_overlap(tri: torch.Tensor, box_min: torch.Tensor) -> torch.Tensor:
    """Separating-axis test of triangles (M, 3, 3) against unit boxes `[box_min, box_min + 1]` (closed)."""
    centre = box_min + 0.5
    v = tri - centre[:, None, :]
    half = 0.5
    overlap = ((v.min(1).values <= half) & (v.max(1).values >= -half)).all(-1)
    edges = v.roll(-1, 1) - v
    normal = torch.cross(edges[:, 0], edges[:, 1], dim=-1)
    # plane of the triangle against the box
    radius = half * normal.abs().sum(-1)
    dist = (normal * v[:, 0]).sum(-1)
    overlap &= dist.abs() <= radius
    eye = torch.eye(3, dtype=tri.dtype, device=tri.device)
    for axis in range(3):
        for k in range(3):
            ax = torch.cross(eye[axis].expand_as(edges[:, k]), edges[:, k], dim=-1)
            proj = (v * ax[:, None, :]).sum(-1)
            r = half * ax.abs().sum(-1)
            overlap &= (proj.min(1).values <= r) & (proj.max(1).values >= -r)
    return overlap


def _segment_box_overlap(p0: torch.Tensor, p1: torch.Tensor, box_min: torch.Tensor) -> torch.Tensor:
    """Slab test of segments p0->p1 (M, 3) against unit boxes `[box_min, box_min + 1]` (closed)."""
    d = p1 - p0
    t0 = torch.zeros(p0.shape[0], dtype=p0.dtype, device=p0.device)
    t1 = torch.ones_like(t0)
    for axis in range(3):
        lo, hi = box_min[:, axis] - p0[:, axis], box_min[:, axis] + 1 - p0[:, axis]
        da = d[:, axis]
        par = da == 0
        safe = torch.where(par, torch.ones_like(da), da)
        ta, tb = lo / safe, hi / safe
        tmin, tmax = torch.minimum(ta, tb), torch.maximum(ta, tb)
        t0 = torch.where(par, t0, torch.maximum(t0, tmin))
        t1 = torch.where(par, t1, torch.minimum(t1, tmax))
        t1 = torch.where(par & ((lo > 0) | (hi < 0)), torch.full_like(t1, -1.0), t1)
    return t0 <= t1


def _boundary_edges(faces: torch.Tensor) -> torch.Tensor:
    """Edges (unordered vertex-index pairs) used by exactly one face: (E, 2)."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(-1).values
    uniq, count = torch.unique(edges, dim=0, return_counts=True)
    return uniq[count == 1]


def _solve_linear(a: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Batched `a x = rhs` (float64); singular systems fall back to the minimum-norm least-squares solution."""
    x, info = torch.linalg.solve_ex(a, rhs[..., None])
    x = x[..., 0]
    bad = (info != 0) | ~torch.isfinite(x).all(-1)
    if bool(bad.any()):
        x[bad] = (torch.linalg.pinv(a[bad]) @ rhs[bad][..., None])[..., 0]
    return x


def _energy(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[x;1]^T Q [x;1] per row."""
    a, off = q[:, :3, :3], q[:, :3, 3]
    return torch.einsum("ni,nij,nj->n", x, a, x) + 2 * (off * x).sum(-1) + q[:, 3, 3]


def _inside(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    tol = 1e-9 * (hi - lo).amax(-1, keepdim=True)
    return ((x >= lo - tol) & (x <= hi + tol)).all(-1)


def _constrained_minimum(q: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Best point on the box surface: 6 faces (2x2 solves), 12 edges (1D), 8 corners; lowest energy wins."""
    a, rhs = q[:, :3, :3], -q[:, :3, 3]
    best = lo.clone()
    best_e = torch.full((q.shape[0],), torch.inf, dtype=q.dtype, device=q.device)

    def consider(x: torch.Tensor) -> None:
        nonlocal best, best_e
        e = torch.where(_inside(x, lo, hi), _energy(q, x), torch.full_like(best_e, torch.inf))
        better = e < best_e
        best = torch.where(better[:, None], x, best)
        best_e = torch.where(better, e, best_e)

    for k in range(3):  # faces: coordinate k fixed on a bound
        f = [i for i in range(3) if i != k]
        a2 = a[:, f][:, :, f]
        for bound in (lo, hi):
            x = bound.clone()
            x[:, f] = _solve_linear(a2, rhs[:, f] - a[:, f, k] * bound[:, k, None])
            consider(x)
    for k in range(3):  # edges: only coordinate k free
        f = [i for i in range(3) if i != k]
        akk = a[:, k, k]
        for b0 in (lo, hi):
            for b1 in (lo, hi):
                x = lo.clone()
                x[:, f[0]], x[:, f[1]] = b0[:, f[0]], b1[:, f[1]]
                num = rhs[:, k] - a[:, k, f[0]] * x[:, f[0]] - a[:, k, f[1]] * x[:, f[1]]
                x[:, k] = torch.where(
                    akk != 0, num / torch.where(akk != 0, akk, torch.ones_like(akk)), lo[:, k]
                )
                consider(x)
    for bx in (lo, hi):  # corners
        for by in (lo, hi):
            for bz in (lo, hi):
                consider(torch.stack([bx[:, 0], by[:, 1], bz[:, 2]], -1))
    return best


def _solve_qef(q: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Minimise [x;1]^T Q [x;1] over the closed boxes [lo, hi] (float64): unconstrained, else on the surface."""
    x = _solve_linear(q[:, :3, :3], -q[:, :3, 3])
    outside = ~_inside(x, lo, hi)
    if bool(outside.any()):
        x[outside] = _constrained_minimum(q[outside], lo[outside], hi[outside])
    return torch.minimum(torch.maximum(x, lo), hi)


def mesh_to_flexible_dual_grid(
    vertices,
    faces,
    voxel_size: float | Sequence[float] | None = None,
    grid_size: int | Sequence[int] | None = None,
    aabb=None,
    face_weight: float = 1.0,
    boundary_weight: float = 1.0,
    regularization_weight: float = 0.1,
    timing: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxelise a triangle mesh into a flexible dual grid.

    Returns `(coords int32 (N, 3), dual_vertices float32 (N, 3), intersected bool (N, 3))`: active voxels
    sorted by `(x, y, z)`, dual vertices as absolute positions relative to `aabb_min` (world units, inside
    the voxel's closed box), and per-axis flags of the owned edges. TRELLIS.2 training data uses
    `face_weight=1.0, boundary_weight=0.2, regularization_weight=1e-2`. Geometry outside the AABB is ignored.
    `timing` is accepted for API compatibility and ignored.
    """
    verts, faces = validate_mesh(vertices, faces)
    device = verts.device
    aabb_t, vs, res = resolve_grid(verts, aabb, voxel_size, grid_size)
    v64 = verts.to(torch.float64) - aabb_t[0].to(torch.float64)
    vs64 = vs.to(torch.float64)
    tri = v64[faces]  # (F, 3, 3) shifted world units
    g = tri / vs64  # voxel units

    # 1. crossings of the three lattice-line families -> active voxels, flags, means, crossing quadrics
    plane_q = _plane_quadrics(tri)
    keys, flags_axis, cross_tri, cross_pts = [], [], [], []
    for axis in range(3):
        t_idx, pts, owner = edge_crossings(g, res, axis)
        b, c = (axis + 1) % 3, (axis + 2) % 3
        for db, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
            vox = owner.clone()
            vox[:, b] += db
            vox[:, c] += dc
            keys.append(vox)
            flags_axis.append(torch.full((vox.shape[0],), axis if (db, dc) == (0, 0) else -1, device=device))
            cross_tri.append(t_idx)
            cross_pts.append(pts)
    all_vox = torch.cat(keys)
    if all_vox.shape[0] == 0:
        raise ValueError(
            "the mesh crosses no voxel edge of the grid (it is empty at this resolution or outside the AABB)"
        )
    res_cpu = res.to(all_vox.device)
    keys_lin = (all_vox[:, 0] * res_cpu[1] + all_vox[:, 1]) * res_cpu[2] + all_vox[:, 2]
    uniq, inverse = torch.unique(keys_lin, return_inverse=True)
    coords = torch.stack(
        [uniq // (res_cpu[1] * res_cpu[2]), (uniq // res_cpu[2]) % res_cpu[1], uniq % res_cpu[2]], 1
    )
    n = coords.shape[0]
    flag_axis = torch.cat(flags_axis)
    intersected = torch.zeros(n, 3, dtype=torch.bool, device=device)
    owned = flag_axis >= 0
    intersected[inverse[owned], flag_axis[owned]] = True
    tri_of = torch.cat(cross_tri)
    pts = torch.cat(cross_pts) * vs64
    cnt = torch.zeros(n, dtype=torch.float64, device=device).index_add_(
        0, inverse, torch.ones_like(inverse, dtype=torch.float64)
    )
    mean = torch.zeros(n, 3, dtype=torch.float64, device=device).index_add_(0, inverse, pts) / cnt[:, None]
    q = torch.zeros(n, 16, dtype=torch.float64, device=device)
    q.index_add_(0, inverse, plane_q.reshape(-1, 16)[tri_of])
    del all_vox, flag_axis, tri_of, pts
    grid = SparseVoxelGrid(coords, res.tolist())

    # 2. face term: plane quadric of every triangle overlapping an active voxel
    if face_weight > 0:
        lo = torch.floor(g.min(1).values).clamp(min=0).to(torch.int64)
        hi = torch.minimum(torch.floor(g.max(1).values).to(torch.int64), res - 1)
        counts = (hi - lo + 1).clamp(min=0).prod(-1)
        for start, end in chunks_by_budget(counts):
            owner, vox = enumerate_boxes(lo[start:end], hi[start:end])
            rows = grid.find(vox)
            hit = rows >= 0
            owner, vox, rows = owner[hit] + start, vox[hit], rows[hit]
            hit = _triangle_box_overlap(g[owner], vox.to(torch.float64))
            q.index_add_(0, rows[hit], plane_q.reshape(-1, 16)[owner[hit]])

    # 3. boundary term: squared distance to the line of each boundary edge, in the voxels it passes
    if boundary_weight > 0:
        bedges = _boundary_edges(faces)
        p0, p1 = v64[bedges[:, 0]], v64[bedges[:, 1]]
        seg = p1 - p0
        length = seg.norm(dim=-1)
        keep = length >= 1e-6
        p0, p1, seg, length = p0[keep], p1[keep], seg[keep], length[keep]
        d = seg / length[:, None]
        line_a = torch.eye(3, dtype=torch.float64, device=device) - d[:, :, None] * d[:, None, :]
        av0 = (line_a @ p0[:, :, None])[:, :, 0]
        line_q = torch.zeros(p0.shape[0], 4, 4, dtype=torch.float64, device=device)
        line_q[:, :3, :3] = line_a
        line_q[:, :3, 3] = -av0
        line_q[:, 3, :3] = -av0
        line_q[:, 3, 3] = (p0 * av0).sum(-1)
        line_q = line_q.reshape(-1, 16) * boundary_weight
        g0, g1 = p0 / vs64, p1 / vs64
        lo = torch.floor(torch.minimum(g0, g1)).clamp(min=0).to(torch.int64)
        hi = torch.minimum(torch.floor(torch.maximum(g0, g1)).to(torch.int64), res - 1)
        counts = (hi - lo + 1).clamp(min=0).prod(-1)
        for start, end in chunks_by_budget(counts):
            owner, vox = enumerate_boxes(lo[start:end], hi[start:end])
            rows = grid.find(vox)
            hit = rows >= 0
            owner, vox, rows = owner[hit] + start, vox[hit], rows[hit]
            hit = _segment_box_overlap(g0[owner], g1[owner], vox.to(torch.float64))
            q.index_add_(0, rows[hit], line_q[owner[hit]])

    # 4. regularisation towards the mean crossing point, then the box-constrained solve
    q = q.reshape(n, 4, 4)
    if regularization_weight > 0:
        w = regularization_weight * cnt
        q[:, [0, 1, 2], [0, 1, 2]] += w[:, None]
        q[:, :3, 3] -= w[:, None] * mean
        q[:, 3, :3] -= w[:, None] * mean
        q[:, 3, 3] += w * (mean * mean).sum(-1)
    box_lo = coords.to(torch.float64) * vs64
    box_hi = (coords + 1).to(torch.float64) * vs64
    dual = _solve_qef(q, box_lo, box_hi)
    return coords.to(torch.int32), dual.to(torch.float32), intersected
