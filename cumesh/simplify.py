"""QEM edge-collapse simplification to a face budget, in parallel rounds (batched torch, any device).

Each round: accumulate per-vertex quadrics (area-weighted face planes, plus heavy planes through
boundary edges so open borders stay in place), score every edge at its best placement (optimal point of
the summed quadric when well conditioned, else the best of the endpoints and midpoint), pick an
independent set of the cheapest edges (an edge collapses only if it is the cheapest edge touching every
face around both endpoints, so no face sees two collapses), reject collapses that would flip or crush a
face, and apply them all at once. Quadrics are carried through collapses. The last round applies only as
many collapses as needed, so the result has at most `target_num_faces` faces, usually just below it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .cleanup import compact
from .connectivity import boundary_half_edges, unique_edges
from .validation import check_mesh

_BOUNDARY_WEIGHT = 100.0
_LENGTH_WEIGHT = 1e-3
_MIN_NORMAL_COS = 0.1
_SELECTION_PASSES = 4
_SYM = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
_CHUNK = 1 << 21  # faces or edges per chunk of the float64 quadric arithmetic (bounds peak memory)


def _plane_quadrics(n: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Quadrics `[N, 10]` = w * (A[6 upper entries], b = n d [3], c = d^2) of planes n.x + d = 0."""
    a = torch.stack([n[:, i] * n[:, j] for i, j in _SYM], 1)
    return torch.cat([a, n * d[:, None], (d * d)[:, None]], 1) * w[:, None]


def _quadric_eval(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x^T A x + 2 b.x + c for quadrics `[N,10]` at points `[N,3]`."""
    xx, yy, zz = x[:, 0], x[:, 1], x[:, 2]
    quad = (
        q[:, 0] * xx * xx
        + q[:, 3] * yy * yy
        + q[:, 5] * zz * zz
        + 2 * (q[:, 1] * xx * yy + q[:, 2] * xx * zz + q[:, 4] * yy * zz)
    )
    return quad + 2 * (q[:, 6] * xx + q[:, 7] * yy + q[:, 8] * zz) + q[:, 9]


def _quadric_minimizer(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = -b by Cramer's rule; returns `(x [N,3], well_conditioned [N])`."""
    a00, a01, a02, a11, a12, a22 = (q[:, i] for i in range(6))
    b = -q[:, 6:9]
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    det = a00 * c00 + a01 * c01 + a02 * c02
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inv_det = 1.0 / torch.where(det.abs() > 0, det, torch.ones_like(det))
    x = (
        torch.stack(
            [
                c00 * b[:, 0] + c01 * b[:, 1] + c02 * b[:, 2],
                c01 * b[:, 0] + c11 * b[:, 1] + c12 * b[:, 2],
                c02 * b[:, 0] + c12 * b[:, 1] + c22 * b[:, 2],
            ],
            1,
        )
        * inv_det[:, None]
    )
    scale = (a00 + a11 + a22).abs() ** 3
    ok = det.abs() > 1e-6 * scale
    return x, ok & torch.isfinite(x).all(1)


def _initial_quadrics(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    q = torch.zeros(v.shape[0], 10, dtype=v.dtype, device=v.device)
    for s in range(0, f.shape[0], _CHUNK):  # [chunk, 10] float64 temporaries, not [F, 10]
        fc = f[s : s + _CHUNK]
        p0, p1, p2 = v[fc[:, 0]], v[fc[:, 1]], v[fc[:, 2]]
        cross = torch.linalg.cross(p1 - p0, p2 - p0)
        norm = torch.linalg.norm(cross, dim=1)
        n = cross / norm.clamp_min(1e-30)[:, None]
        q_face = _plane_quadrics(n, -(n * p0).sum(1), 0.5 * norm)
        for k in range(3):
            q.index_add_(0, fc[:, k], q_face)
    # boundary edges: plane containing the edge, perpendicular to its face
    he = boundary_half_edges(f, v.shape[0])
    if he.numel():
        face = he // 3
        a, b = f.reshape(-1)[he], f[face, (he % 3 + 1) % 3]
        e = v[b] - v[a]
        fv = v[f[face]]
        cross = torch.linalg.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])
        n = cross / torch.linalg.norm(cross, dim=1).clamp_min(1e-30)[:, None]
        bn = torch.linalg.cross(e, n)
        bnorm = torch.linalg.norm(bn, dim=1)
        bn = bn / bnorm.clamp_min(1e-30)[:, None]
        qb = _plane_quadrics(bn, -(bn * v[a]).sum(1), _BOUNDARY_WEIGHT * (e * e).sum(1))
        q.index_add_(0, a, qb)
        q.index_add_(0, b, qb)
    return q


def simplify(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    target_num_faces: int,
    progress: Callable[[int, int], None] | None = None,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simplify to at most `target_num_faces` faces by quadric-error edge collapses.

    `method`: `"parallel"` (batched torch rounds, any device), `"fast_simplification"` (the sequential
    C++ Fast-Quadric-Mesh-Simplification from PyPI, CPU), or `"auto"`: fast_simplification for CPU
    tensors when it is installed (faster on a few cores), the parallel path otherwise (GPU).
    `progress(faces_removed, faces_to_remove)` is called as work advances. Returns a compact mesh (no
    unreferenced vertices); a mesh already within budget is returned compacted but otherwise unchanged.
    """
    vertices, faces = check_mesh(vertices, faces)
    target = int(target_num_faces)
    if target < 1:
        raise ValueError(f"target_num_faces must be >= 1, got {target_num_faces}")
    if method not in ("auto", "parallel", "fast_simplification"):
        raise ValueError(
            f"unknown simplify method {method!r}; use 'auto', 'parallel' or 'fast_simplification'"
        )
    if (
        faces.shape[0] > target
        and method != "parallel"
        and (method == "fast_simplification" or vertices.device.type == "cpu")
    ):
        try:
            import fast_simplification
        except ImportError:
            if method == "fast_simplification":
                raise ValueError(
                    "method='fast_simplification' needs the fast-simplification package"
                ) from None
        else:
            return _simplify_fast(fast_simplification, vertices, faces, target, progress)
    v = vertices.double() if vertices.dtype == torch.float64 else vertices.float()
    f = faces
    start_faces = f.shape[0]
    if start_faces <= target:
        return compact(vertices, faces)
    work = v.double()  # quadric arithmetic in float64 for stability
    q = _initial_quadrics(work, f)
    stalled = 0
    while f.shape[0] > target:
        # after a round without progress: relax the flip test, then drop it (the budget is a hard limit)
        v_new, f_new, q = _collapse_round(work, f, q, target, strictness=max(0, 2 - stalled))
        if f_new.shape[0] == f.shape[0]:
            stalled += 1
            if stalled > 2:
                raise RuntimeError(f"simplify could not reduce the mesh below {f.shape[0]} faces")
        else:
            stalled = 0
        work, f = v_new, f_new
        if progress is not None:
            progress(start_faces - f.shape[0], start_faces - target)
    out_v, out_f = compact(work.to(vertices.dtype), f)
    return out_v, out_f


def _simplify_fast(module, vertices, faces, target, progress):
    """Run fast_simplification, then finish with parallel rounds if it stopped above the target."""
    start = faces.shape[0]
    v_np = vertices.detach().cpu().numpy().astype("float32")
    f_np = faces.detach().cpu().numpy().astype("int32")
    out_v, out_f = module.simplify(v_np, f_np, target_count=target)
    out_v = torch.from_numpy(out_v).to(device=vertices.device, dtype=vertices.dtype)
    out_f = torch.from_numpy(out_f.astype("int64")).to(vertices.device)
    out_f = out_f[(out_f[:, 0] != out_f[:, 1]) & (out_f[:, 1] != out_f[:, 2]) & (out_f[:, 2] != out_f[:, 0])]
    if progress is not None:
        progress(start - out_f.shape[0], start - target)
    if out_f.shape[0] > target:
        return simplify(out_v, out_f, target, method="parallel")
    return compact(out_v, out_f)


def _edge_collapses(
    v: torch.Tensor, q: torch.Tensor, e0: torch.Tensor, e1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per edge, the collapse position `[E, 3]` and its cost `[E]`, computed in chunks of edges.

    Candidates: both endpoints, the midpoint, and the quadric optimum when it is well conditioned and
    near the edge; the cost is the summed quadric there plus a small length term.
    """
    num = e0.shape[0]
    pos = torch.empty(num, 3, dtype=v.dtype, device=v.device)
    cost = torch.empty(num, dtype=v.dtype, device=v.device)
    length = torch.empty(num, dtype=v.dtype, device=v.device)
    for s in range(0, num, _CHUNK):
        a, b = e0[s : s + _CHUNK], e1[s : s + _CHUNK]
        qe = q[a] + q[b]
        pa, pb = v[a], v[b]
        mid = 0.5 * (pa + pb)
        best_pos, best_cost = pa, _quadric_eval(qe, pa)
        for cand in (pb, mid):  # strict comparison: ties keep the earlier candidate
            c = _quadric_eval(qe, cand)
            better = c < best_cost
            best_pos = torch.where(better[:, None], cand, best_pos)
            best_cost = torch.where(better, c, best_cost)
        x_opt, ok = _quadric_minimizer(qe)
        edge_len = ((pa - pb) ** 2).sum(1)
        # accept the optimum only if it is near the edge (guards against far-away solutions)
        near = ((x_opt - mid) ** 2).sum(1) <= edge_len
        c_opt = _quadric_eval(qe, torch.where(ok[:, None], x_opt, best_pos))
        use_opt = ok & near & (c_opt < best_cost)
        pos[s : s + _CHUNK] = torch.where(use_opt[:, None], x_opt, best_pos)
        cost[s : s + _CHUNK] = torch.where(use_opt, c_opt, best_cost).clamp_min(0)
        length[s : s + _CHUNK] = edge_len
    cost += _LENGTH_WEIGHT * length * length.mean().sqrt()
    return pos, cost


def _collapse_round(v, f, q, target, strictness: int):
    relax = strictness < 2
    nv, device = v.shape[0], v.device
    edges = unique_edges(f, nv)
    e0, e1 = edges[:, 0], edges[:, 1]
    pos, cost = _edge_collapses(v, q, e0, e1)
    # how many collapses are needed (each removes ~2 faces); consider the cheapest share of edges
    need = max(1, (f.shape[0] - target + 1) // 2)
    num_cand = min(e0.shape[0], max(need * 4, e0.shape[0] // 4) if not relax else e0.shape[0])
    cost32 = cost.float()
    if num_cand < e0.shape[0]:
        thresh = torch.kthvalue(cost32, num_cand).values
        cand = cost32 <= thresh
    else:
        cand = torch.ones_like(cost, dtype=torch.bool)
    # pack (cost, edge id) into one sortable int64: non-negative float32 bits are monotone
    key = (cost32.view(torch.int32).long() << 32) | torch.arange(e0.shape[0], device=device)
    del cost32
    big = torch.iinfo(torch.long).max
    key = torch.where(cand, key, torch.full_like(key, big))
    chosen = torch.zeros_like(cand)
    live = cand
    for _ in range(_SELECTION_PASSES):
        k = torch.where(live, key, torch.full_like(key, big))
        vmin = torch.full((nv,), big, dtype=torch.long, device=device)
        vmin.scatter_reduce_(0, e0, k, reduce="amin")
        vmin.scatter_reduce_(0, e1, k, reduce="amin")
        fmin = vmin[f].min(1).values
        vcheck = torch.full((nv,), big, dtype=torch.long, device=device)
        vcheck.scatter_reduce_(0, f.reshape(-1), fmin.repeat_interleave(3), reduce="amin")
        won = live & (vcheck[e0] == key) & (vcheck[e1] == key)
        chosen |= won
        # block every vertex of every face touched by a chosen edge
        hot = torch.zeros(nv, dtype=torch.bool, device=device)
        hot[e0[chosen]] = True
        hot[e1[chosen]] = True
        blocked = torch.zeros(nv, dtype=torch.bool, device=device)
        blocked[f[hot[f].any(1)].reshape(-1)] = True
        live = live & ~chosen & ~blocked[e0] & ~blocked[e1]
        if not bool(live.any()):
            break
    sel = torch.nonzero(chosen).squeeze(1)
    # per-vertex collapse assignment (each vertex in at most one chosen edge)
    owner = torch.full((nv,), -1, dtype=torch.long, device=device)
    owner[e0[sel]] = sel
    owner[e1[sel]] = sel
    # reject flips / crushed faces among faces touched by exactly one endpoint
    fo = owner[f]  # [F,3]
    touched_edge = fo.max(1).values
    touched = touched_edge >= 0
    both = touched & ((fo == touched_edge[:, None]).sum(1) >= 2)
    check = touched & ~both
    if strictness > 0 and bool(check.any()):
        checked = torch.nonzero(check).squeeze(1)
        reject = torch.zeros(e0.shape[0], dtype=torch.bool, device=device)
        for s in range(0, checked.numel(), _CHUNK):  # [chunk, 3, 3] float64 corners, not [F, 3, 3]
            fi = checked[s : s + _CHUNK]
            tri = f[fi]
            te = touched_edge[fi]
            p_old = v[tri]
            moved = fo[fi] >= 0
            p_new = torch.where(moved[..., None], pos[te][:, None, :], p_old)
            n_old = torch.linalg.cross(p_old[:, 1] - p_old[:, 0], p_old[:, 2] - p_old[:, 0])
            n_new = torch.linalg.cross(p_new[:, 1] - p_new[:, 0], p_new[:, 2] - p_new[:, 0])
            dot = (n_old * n_new).sum(1)
            if relax:
                good = dot >= 0
            else:
                good = dot > _MIN_NORMAL_COS * torch.linalg.norm(n_old, dim=1) * torch.linalg.norm(
                    n_new, dim=1
                )
            reject[te[~good]] = True
        sel = sel[~reject[sel]]
    if sel.numel() == 0:
        return v, f, q
    # faces removed per collapse: faces containing both endpoints
    owner = torch.full((nv,), -1, dtype=torch.long, device=device)
    owner[e0[sel]] = sel
    owner[e1[sel]] = sel
    fo = owner[f]
    te = fo.max(1).values
    dying = (te >= 0) & ((fo == te[:, None]).sum(1) >= 2)
    removed = torch.zeros(e0.shape[0], dtype=torch.long, device=device)
    removed.index_add_(0, te[dying], torch.ones_like(te[dying]))
    excess = f.shape[0] - target
    order = torch.argsort(cost[sel])
    sel = sel[order]
    csum = torch.cumsum(removed[sel], 0)
    cut = int(torch.searchsorted(csum, torch.tensor([excess], device=device)).item()) + 1
    sel = sel[:cut]
    # apply
    a, b = e0[sel], e1[sel]
    v = v.clone()
    v[a] = pos[sel]
    q = q.clone()
    q[a] = q[a] + q[b]
    remap = torch.arange(nv, device=device)
    remap[b] = a
    f = remap[f]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return v, f[keep], q
