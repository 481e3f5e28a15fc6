"""Narrow-band dual-contouring remesh of the unsigned distance field (spec §3.14), batched torch.

The new surface is the zero set of `f = UDF - eps`, `eps = band * scale / resolution`: a clean,
consistently oriented offset surface (two sheets around a closed input, a thin shell around an open
sheet). Only grid points near the surface are ever touched (`band_distance`): first the points inside
the band (`UDF < eps`, exact distances), then their 6-neighbours outside it (the far ends of every
edge that crosses the zero set), whose distance is taken to the closest faces of their band
neighbours: an upper bound that keeps every sign exact. The cells with a sign change among their corners
are exactly the cells the contour passes through (the spec finds a superset of them coarse to fine;
the extra cells carry no quad and are dropped with the unreferenced vertices). Dual vertices are the
mean of the crossing points on the cell's 12 edges; quads come from the sign changes on cell edges (same
4-cell table as the O-Voxel mesh), split along the shorter diagonal, and wound so normals point from
`f < 0` towards `f >= 0` (away from the input surface). No `resolution^3` array is ever allocated and
every large step runs in bounded chunks.
"""

from __future__ import annotations

import torch

from .band_distance import grid_coords, grid_keys, near_grid_distances, segment_min
from .bvh import MeshBVH, closest_point_packed, pack_distance_face, pack_triangles, unpack_distance_face
from .cleanup import referenced
from .connectivity import connected_components
from .sorted_lookup import lookup_sorted
from .validation import check_mesh

_CELL_CHUNK = 1 << 20  # cells per chunk when computing dual vertices (bounds peak memory)
_CORNERS = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
# the 12 edges of a unit cell as corner-index pairs (into _CORNERS)
_CELL_EDGES = torch.tensor(
    [
        [a, b]
        for a in range(8)
        for b in range(8)
        if a < b and int((_CORNERS[a] - _CORNERS[b]).abs().sum()) == 1
    ]
)
# owned edge per axis: start corner offset, and the 4 cells around it (quad order of the O-Voxel table)
_OWNED_START = torch.tensor([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
_QUAD_CELLS = torch.tensor(
    [
        [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],
        [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],
    ]
)


def _field_at(keys: torch.Tensor, field: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """`f` at grid points given by key; points never computed are far outside the band (`+inf`)."""
    return _field_and_face_at(keys, field, field, query)[0]


def _field_and_face_at(keys, field, face, query) -> tuple[torch.Tensor, torch.Tensor]:
    pos, found = lookup_sorted(keys, query)
    return torch.where(found, field[pos], torch.full_like(field[pos], torch.inf)), face[pos]


def _add_outer_neighbours(
    vertices, faces, packed, origin, cell, n, eps, inside_keys, inside_udf, inside_face
):
    """Sorted keys, `f = UDF - eps` and a face of the band points plus their 6-neighbours outside the band.

    Every grid edge crossing the zero set joins a band point to such a neighbour. Its `f` is not searched
    for exactly: it is the distance to the closest faces of its band neighbours (at most 6 candidates),
    minus `eps`. That is an upper bound of the true value and, since the neighbour lies outside the band
    (true UDF >= eps), never below zero, so every sign, and with it every crossed cell and every quad, is
    exactly that of the exact field; only the crossing points along those edges move, by a fraction of a
    cell at most where the closest face changes between neighbours. On a 128^3 sphere the offset surface stays
    within 0.018 (mean) / 0.12 (max) of a cell of the exact one (exact field: 0.013 / 0.018). This replaces a
    grid search over ~100 candidate points per triangle, 3/4 of the CPU time of the whole remesh.
    """
    device, dtype = inside_keys.device, vertices.dtype
    steps = torch.cat([torch.eye(3, dtype=torch.long), -torch.eye(3, dtype=torch.long)]).to(device)
    found_keys, found_best = [], []
    for s in range(0, inside_keys.numel(), _CELL_CHUNK):
        nb = grid_coords(inside_keys[s : s + _CELL_CHUNK], n)[:, None, :] + steps  # [c, 6, 3]
        face = inside_face[s : s + _CELL_CHUNK, None].expand(-1, 6)
        valid = ((nb >= 0) & (nb <= n)).all(2)
        nb, face = nb[valid], face[valid]
        keys = grid_keys(nb, n)
        _, is_inside = lookup_sorted(inside_keys, keys)
        nb, face, keys = nb[~is_inside], face[~is_inside], keys[~is_inside]
        dist_sq, _ = closest_point_packed(origin + nb.to(dtype) * cell, packed[face])
        k, best = segment_min(keys, pack_distance_face(dist_sq, face))
        found_keys.append(k)
        found_best.append(best)
    outer_keys, best = segment_min(torch.cat(found_keys), torch.cat(found_best))
    outer_udf, outer_face = unpack_distance_face(best, dtype)
    keys, order = torch.sort(torch.cat([inside_keys, outer_keys]))
    return (
        keys,
        (torch.cat([inside_udf, outer_udf.clamp_min(eps)]) - eps)[order],
        torch.cat([inside_face, outer_face])[order],
    )


def _distance_bounds(points, point_keys, corner_keys, corner_face, packed, corner_offsets) -> torch.Tensor:
    """Upper bound on each point's distance to the mesh: the distance to the closest faces of its cell's corners."""
    bound = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    step = _CELL_CHUNK // 4 if points.is_cuda else 1 << 14  # 8 (point, face) pairs per point
    for s in range(0, points.shape[0], step):
        pos, _ = lookup_sorted(corner_keys, point_keys[s : s + step, None] + corner_offsets)
        d, _ = closest_point_packed(
            points[s : s + step].repeat_interleave(8, 0), packed[corner_face[pos].reshape(-1)]
        )
        bound[s : s + step] = d.reshape(-1, 8).min(1).values.sqrt()
    return bound


def _crossed_cells(corner_keys: torch.Tensor, field: torch.Tensor, n: int) -> torch.Tensor:
    """Coordinates `[C, 3]` (sorted by key) of the cells whose corners have both signs of `f`."""
    corners = _CORNERS.to(corner_keys.device)
    inside = grid_coords(corner_keys[field < 0], n)
    offsets = grid_keys(corners, n)
    parts = []
    for s in range(0, inside.shape[0], _CELL_CHUNK):
        cand = inside[s : s + _CELL_CHUNK, None, :] - corners
        cand = cand[((cand >= 0) & (cand < n)).all(2)]
        keys = torch.unique(grid_keys(cand, n))
        f = _field_at(corner_keys, field, keys[:, None] + offsets)
        parts.append(keys[(f >= 0).any(1) & (f < 0).any(1)])
    keys = torch.unique(torch.cat(parts)) if parts else corner_keys[:0]
    return grid_coords(keys, n)


def _drop_inward_sheets(
    v: torch.Tensor, f: torch.Tensor, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Remove the vertex-connected components whose signed volume is negative (unless that is all of them)."""
    links = torch.cat([f[:, [0, 1]], f[:, [1, 2]]])
    label = connected_components(v.shape[0], links)
    face_label = label[f[:, 0]]
    p0, p1, p2 = v[f[:, 0]].double(), v[f[:, 1]].double(), v[f[:, 2]].double()
    volume = torch.zeros(int(label.max()) + 1, dtype=torch.float64, device=v.device)
    volume.index_add_(0, face_label, (p0 * torch.linalg.cross(p1, p2)).sum(1) / 6)
    keep_face = volume[face_label] > 0
    if not bool(keep_face.any()) or bool(keep_face.all()):
        return v, f, keys
    used, f = referenced(f[keep_face], v.shape[0])
    return v[used], f, keys[used]


def remesh_narrow_band_dc(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    center,
    scale: float,
    resolution: int,
    band: float = 1,
    project_back: float = 0.0,
    bvh: MeshBVH | None = None,
    keep_inward_sheets: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remesh as the `eps`-offset surface of the input on a `resolution^3` grid over a cube.

    The cube has side `scale` and centre `center`; grid point `g` is at `(g / resolution - 0.5) * scale +
    center`. `project_back` in [0, 1] moves each output vertex that fraction of the way to its closest
    point on the input. Returns `(vertices [V', 3], faces [F', 3] int64)` on the input's device.
    `bvh` (of the same mesh) only serves the projection of the ~1% vertices with the loosest distance
    bounds; without it they take a second grid pass (no BVH is built unless float rounding needs one).
    `keep_inward_sheets=False` drops the closed components with negative signed volume (facing inwards):
    the inner offset sheet of every closed input surface, which can only be seen from inside the object
    (the official remesh keeps it, and it takes half the face budget and texture atlas of an export).
    """
    vertices, faces = check_mesh(vertices, faces)
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not band > 0:
        raise ValueError(f"band must be positive, got {band}")
    if not 0.0 <= project_back <= 1.0:
        raise ValueError(f"project_back must be in [0, 1], got {project_back}")
    device, dtype = vertices.device, vertices.dtype
    center_t = torch.as_tensor(center, dtype=dtype, device=device).reshape(3)
    n = resolution
    cell = scale / resolution
    eps = band * cell
    origin = center_t - 0.5 * scale
    empty = vertices.new_zeros(0, 3), faces.new_zeros(0, 3)

    # exact UDF at the grid points inside the band, then at their neighbours just outside it
    inside_keys, inside_udf, inside_face = near_grid_distances(vertices, faces, origin, cell, n, eps)
    if inside_keys.numel() == 0:
        return empty
    packed = pack_triangles(vertices[faces])
    corner_keys, field, corner_face = _add_outer_neighbours(
        vertices, faces, packed, origin, cell, n, eps, inside_keys, inside_udf, inside_face
    )
    del inside_keys, inside_udf, inside_face

    # cells with a sign change among their corners
    cells = _crossed_cells(corner_keys, field, n)
    if cells.shape[0] == 0:
        return empty
    cell_keys = grid_keys(cells, n)
    corners = _CORNERS.to(device)
    corner_offsets = grid_keys(corners, n)  # keys are linear in the coordinates

    # dual vertex per cell: mean of the crossing points on its 12 edges (cell centre if none), in chunks
    e = _CELL_EDGES.to(device)
    dual = torch.empty(cells.shape[0], 3, dtype=dtype, device=device)
    for s in range(0, cells.shape[0], _CELL_CHUNK):
        chunk = cells[s : s + _CELL_CHUNK]
        corner_field = _field_at(corner_keys, field, cell_keys[s : s + _CELL_CHUNK, None] + corner_offsets)
        corner_pos = origin + (chunk[:, None, :] + corners).to(dtype) * cell
        fa, fb = corner_field[:, e[:, 0]], corner_field[:, e[:, 1]]
        crossing = (fa < 0) != (fb < 0)
        # corners outside the band carry an infinite distance: clamp both ends, or inf/inf is NaN
        big = torch.full_like(fa, 1e30)
        fa_safe = torch.where(torch.isfinite(fa), fa, big.copysign(fa))
        fb_safe = torch.where(torch.isfinite(fb), fb, big.copysign(fb))
        t = torch.where(crossing, fa_safe / (fa_safe - fb_safe), torch.zeros_like(fa)).clamp(0, 1)
        pa = corner_pos[:, e[:, 0]]
        points = pa + t[..., None] * (corner_pos[:, e[:, 1]] - pa)
        count = crossing.sum(1)
        mean = (points * crossing[..., None]).sum(1) / count.clamp_min(1)[:, None]
        centre = origin + (chunk.to(dtype) + 0.5) * cell
        usable = (count > 0)[:, None] & torch.isfinite(mean)
        dual[s : s + _CELL_CHUNK] = torch.where(usable, mean, centre)

    # quads from sign changes on owned edges
    quads, flags = [], []
    for axis in range(3):
        start = cells + _OWNED_START[axis].to(device)
        end = start.clone()
        end[:, axis] += 1
        f1 = _field_at(corner_keys, field, grid_keys(start, n))
        f2 = _field_at(corner_keys, field, grid_keys(end, n))
        flag = torch.zeros(cells.shape[0], dtype=torch.long, device=device)
        flag[(f1 < 0) & (f2 >= 0)] = 1
        flag[(f1 >= 0) & (f2 < 0)] = -1
        sel = torch.nonzero(flag).squeeze(1)
        nb = cells[sel][:, None, :] + _QUAD_CELLS[axis].to(device)[None]
        pos, found = lookup_sorted(cell_keys, grid_keys(nb, n))
        full = found.all(1)
        quads.append(pos[full])
        flags.append(flag[sel][full])
    quads, flags = torch.cat(quads), torch.cat(flags)
    q0, q1, q2, q3 = quads.unbind(1)
    diag02 = ((dual[q0] - dual[q2]) ** 2).sum(1)
    diag13 = ((dual[q1] - dual[q3]) ** 2).sum(1)
    use02 = diag02 <= diag13
    tri_a = torch.where(use02[:, None], torch.stack([q0, q1, q2], 1), torch.stack([q0, q1, q3], 1))
    tri_b = torch.where(use02[:, None], torch.stack([q0, q2, q3], 1), torch.stack([q3, q1, q2], 1))
    new_faces = torch.cat([tri_a, tri_b])
    reverse = torch.cat([flags, flags]) > 0
    new_faces = torch.where(reverse[:, None], new_faces[:, [0, 2, 1]], new_faces)
    del quads, flags, q0, q1, q2, q3, diag02, diag13, use02, tri_a, tri_b, reverse, field
    if new_faces.shape[0] == 0:
        return vertices.new_zeros(0, 3), faces.new_zeros(0, 3)
    used, out_f = referenced(new_faces, cells.shape[0])
    out_v, out_keys = dual[used], cell_keys[used]
    del cells, cell_keys, used, dual, new_faces
    if not keep_inward_sheets:
        out_v, out_f, out_keys = _drop_inward_sheets(out_v, out_f, out_keys)
    if project_back > 0:
        bound = _distance_bounds(out_v, out_keys, corner_keys, corner_face, packed, corner_offsets)
        # every dual vertex lies in its own cell: find the closest faces cell by cell, within the bound;
        # the few vertices with the loosest bounds go in a second pass so they do not widen the first
        cut = bound.sort().values[int(0.99 * (bound.numel() - 1))]
        fid = torch.full_like(out_keys, -1)
        for loose, group in enumerate((bound <= cut, bound > cut)):
            if not bool(group.any()):
                continue
            limit = float(bound[group].max()) * (1 + 1e-4) + 1e-6 * scale
            if loose and bvh is not None:
                fid[group] = bvh.closest_point(out_v[group], max_distance=limit)[1]
                continue
            margin = bound[group] * (1 + 1e-4) + 1e-6 * scale
            found, _, found_face = near_grid_distances(
                vertices,
                faces,
                origin,
                cell,
                n,
                limit,
                only=out_keys[group],
                points=out_v[group],
                point_radius=margin,
            )
            if found.numel():
                pos, ok = lookup_sorted(out_keys, found)
                fid[pos[ok]] = found_face[ok]
        far = fid < 0
        if bool(far.any()):  # only through float rounding; fall back to an unbounded search
            if bvh is None:
                bvh = MeshBVH(vertices, faces)
            fid[far] = bvh.closest_point(out_v[far])[1]
        _, uvw = closest_point_packed(out_v, packed[fid])
        closest = (uvw[:, :, None] * vertices[faces[fid]]).sum(1)
        out_v = out_v - project_back * (out_v - closest)
    return out_v, out_f
