"""UV unwrapping: fast axis-cone clustering into charts, packed (and optionally re-charted) by xatlas.

Why clustering first: xatlas's own chart growing is slow on large charts (seconds for 20K faces, and it
can crash on meshes of ~10^5 faces). We split the surface into small connected patches whose face
normals all lie within 54.7 degrees of one of the six axis directions (the dominant normal component),
inside cells of a coarse spatial grid. Each patch projects onto its axis plane without flipping a
triangle, so by default that projection is handed to xatlas as the chart (`use_input_mesh_uvs=True`)
and xatlas only packs. Set `use_input_mesh_uvs=False` to let xatlas compute charts inside every patch
with its `ChartOptions` (slower, fewer seams per patch, lower distortion).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xatlas

from .cleanup import degenerate_face_mask, referenced
from .connectivity import connected_components, edge_table, manifold_half_edge_pairs
from .validation import check_mesh

_CHART_OPTION_NAMES = {
    "max_chart_area",
    "max_boundary_length",
    "normal_deviation_weight",
    "roundness_weight",
    "straightness_weight",
    "normal_seam_weight",
    "texture_seam_weight",
    "max_cost",
    "max_iterations",
    "use_input_mesh_uvs",
    "fix_winding",
}
_PACK_OPTION_NAMES = {
    "max_chart_size",
    "padding",
    "texels_per_unit",
    "resolution",
    "bilinear",
    "blockAlign",
    "bruteForce",
    "rotate_charts",
    "rotate_charts_to_axis",
}
_PACK_ALIASES = {"block_align": "blockAlign", "brute_force": "bruteForce"}
# CuMesh's GPU clustering keywords (to_glb passes them): accepted; see `uv_unwrap` for their effect here.
_CUMESH_CLUSTER_NAMES = {
    "threshold_cone_half_angle_rad",
    "refine_iterations",
    "global_iterations",
    "smooth_strength",
    "area_penalty_weight",
    "perimeter_area_ratio_weight",
}
_XATLAS_SCALE = 100.0  # positions handed to xatlas span ~100 units, far above its absolute epsilons


def cluster_faces(
    vertices: torch.Tensor, faces: torch.Tensor, max_cluster_faces: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chart id per face `[F]` and the dominant signed axis per chart (0..5 = +x,-x,+y,-y,+z,-z)."""
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = torch.linalg.cross(p1 - p0, p2 - p0)
    axis = cross.abs().argmax(1)
    sign_neg = cross.gather(1, axis[:, None]).squeeze(1) < 0
    direction = axis * 2 + sign_neg.long()
    area = 0.5 * float(torch.linalg.norm(cross, dim=1).sum())
    cell = math.sqrt(max(area, 1e-30) * max_cluster_faces / max(faces.shape[0], 1))
    centroid = (p0 + p1 + p2) / 3
    grid = torch.floor((centroid - centroid.min(0).values) / cell).long()
    dims = grid.max(0).values + 1
    key = ((direction * dims[0] + grid[:, 0]) * dims[1] + grid[:, 1]) * dims[2] + grid[:, 2]
    pairs = manifold_half_edge_pairs(edge_table(faces, vertices.shape[0])) // 3
    pairs = pairs[key[pairs[:, 0]] == key[pairs[:, 1]]]
    labels = connected_components(faces.shape[0], pairs)
    chart_dir = torch.zeros(int(labels.max()) + 1, dtype=torch.long, device=faces.device)
    chart_dir[labels] = direction
    return labels, chart_dir


def _project(points: torch.Tensor, direction: int) -> torch.Tensor:
    """Orientation-preserving projection onto the plane normal to a signed axis."""
    a = direction // 2
    b, c = (a + 1) % 3, (a + 2) % 3
    uv = points[:, [b, c]] if direction % 2 == 0 else points[:, [c, b]]
    return uv


def _make_options(kwargs: dict | None, cls, names: set, aliases: dict | None = None, what: str = ""):
    opts = cls()
    for key, value in (kwargs or {}).items():
        key = (aliases or {}).get(key, key)
        if key not in names:
            raise ValueError(f"unknown {what} option {key!r}; valid: {sorted(names)}")
        setattr(opts, key, value)
    return opts


def uv_unwrap(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    compute_charts_kwargs: dict | None = None,
    pack_charts_kwargs: dict | None = None,
    texture_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parameterise a mesh into one atlas.

    Returns `(vertices_out [V',3], faces_out [F',3] int64, uvs [V',2] in [0,1], vmap [V'] int64)` on the
    input's device; `vmap` indexes the *input* vertices (`vertices_out = vertices[vmap]`); vertices are
    split along chart seams; faces are grouped by chart. Degenerate faces (repeated index or zero area)
    are dropped first, and faces xatlas could not parameterise (zero UV area) are dropped after, so
    `F' <= F` and no face has a collapsed UV triangle. `v` of the UVs runs along image rows (row 0 is v=0).

    `compute_charts_kwargs`: xatlas `ChartOptions` fields (`max_chart_area`, `max_boundary_length`,
    `normal_deviation_weight`, `roundness_weight`, `straightness_weight`, `normal_seam_weight`,
    `texture_seam_weight`, `max_cost`, `max_iterations`, `fix_winding`, `use_input_mesh_uvs` — default
    True here: our clustered projection is the chart), plus `max_cluster_faces` (default 4096). CuMesh's
    clustering keywords (`threshold_cone_half_angle_rad`, ...) are accepted for compatibility; our
    clustering always uses the six axis cones (half-angle <= 54.7 degrees) and ignores them.
    `pack_charts_kwargs`: xatlas `PackOptions` fields (`padding`, `resolution`, `texels_per_unit`,
    `bilinear`, `block_align`, `brute_force`, `rotate_charts`, `rotate_charts_to_axis`, `max_chart_size`).
    `texture_size`: when given (and `texels_per_unit` is not), the chart scale is chosen so that the packed
    atlas comes out about `texture_size` texels wide, so `padding` counts texels of that texture.
    """
    vertices, faces = check_mesh(vertices, faces)
    device = vertices.device
    chart_kwargs = dict(compute_charts_kwargs or {})
    max_cluster_faces = int(chart_kwargs.pop("max_cluster_faces", 4096))
    for name in _CUMESH_CLUSTER_NAMES:
        chart_kwargs.pop(name, None)
    chart_kwargs.setdefault("use_input_mesh_uvs", True)
    chart_opts = _make_options(chart_kwargs, xatlas.ChartOptions, _CHART_OPTION_NAMES, what="chart")
    pack_opts = _make_options(
        pack_charts_kwargs, xatlas.PackOptions, _PACK_OPTION_NAMES, _PACK_ALIASES, "pack"
    )

    keep = ~degenerate_face_mask(vertices, faces)
    faces = faces[keep]
    if faces.shape[0] == 0:
        raise ValueError("uv_unwrap: every face is degenerate (zero area or repeated index)")
    labels, chart_dir = cluster_faces(vertices, faces, max_cluster_faces)
    order = torch.argsort(labels, stable=True)
    faces_sorted, labels_sorted = faces[order], labels[order]
    nv = vertices.shape[0]
    key = labels_sorted[:, None] * nv + faces_sorted
    uniq, inverse = torch.unique(key.reshape(-1), return_inverse=True)
    chart_of_vertex, global_vertex = uniq // nv, uniq % nv
    num_charts = int(labels.max()) + 1
    vstart = torch.searchsorted(chart_of_vertex, torch.arange(num_charts + 1, device=device))
    fstart = torch.searchsorted(labels_sorted, torch.arange(num_charts + 1, device=device))
    local_faces = (inverse.reshape(-1, 3) - vstart[labels_sorted][:, None]).cpu().numpy().astype(np.uint32)

    lo, hi = vertices.min(0).values, vertices.max(0).values
    scale = _XATLAS_SCALE / max(float((hi - lo).max()), 1e-30)
    positions = ((vertices[global_vertex] - lo) * scale).float()
    chart_uv = torch.empty(positions.shape[0], 2, dtype=torch.float32, device=device)
    dirs = chart_dir[chart_of_vertex]
    for d in range(6):
        sel = dirs == d
        if bool(sel.any()):
            chart_uv[sel] = _project(positions[sel], d)
    if texture_size is not None and not pack_opts.texels_per_unit:
        pack_opts.texels_per_unit = _texels_per_unit(chart_uv, inverse.reshape(-1, 3), int(texture_size))
    positions_np = positions.cpu().numpy()
    uv_np = chart_uv.cpu().numpy()
    vstart_l, fstart_l = vstart.tolist(), fstart.tolist()

    atlas = xatlas.Atlas()
    for c in range(num_charts):
        v0, v1, f0, f1 = vstart_l[c], vstart_l[c + 1], fstart_l[c], fstart_l[c + 1]
        atlas.add_mesh(
            np.ascontiguousarray(positions_np[v0:v1]),
            np.ascontiguousarray(local_faces[f0:f1]),
            uvs=np.ascontiguousarray(uv_np[v0:v1]) if chart_opts.use_input_mesh_uvs else None,
        )
    atlas.generate(chart_opts, pack_opts)

    out_vmap, out_faces, out_uvs = [], [], []
    offset = 0
    global_np = global_vertex.cpu().numpy()
    for c in range(num_charts):
        xref, idx, uvs = atlas[c]
        out_vmap.append(global_np[vstart_l[c] + xref.astype(np.int64)])
        out_faces.append(idx.astype(np.int64) + offset)
        out_uvs.append(uvs)
        offset += xref.shape[0]
    vmap = torch.from_numpy(np.concatenate(out_vmap)).to(device)
    new_faces = torch.from_numpy(np.concatenate(out_faces)).to(device)
    uvs = torch.from_numpy(np.concatenate(out_uvs)).to(device=device, dtype=torch.float32).clamp(0, 1)
    out_v, out_f, out_uv, out_map = remove_uv_degenerate_faces(vertices[vmap], new_faces, uvs, vmap=vmap)
    return out_v, out_f, out_uv, out_map


_ATLAS_FILL = 0.55  # chart area / atlas area that xatlas reaches with padding on many small charts


def _texels_per_unit(chart_uv: torch.Tensor, faces: torch.Tensor, texture_size: int) -> float:
    """xatlas texels per chart unit so the packed charts fill about a `texture_size`^2 atlas."""
    t = chart_uv.double()[faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    area = float((0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()).sum())
    return math.sqrt(_ATLAS_FILL * texture_size**2 / max(area, 1e-30))


def remove_uv_degenerate_faces(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    vmap: torch.Tensor | None = None,
    area_eps: float = 0.0,
    edge_eps: float = 0.0,
    uv_area_eps: float = 1e-14,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The black-bar filter after unwrapping: drop faces that cannot be textured.

    A face goes when it has a repeated index, a 3D area `<= area_eps`, a 3D edge `<= edge_eps` (two
    different vertices at the same position), or a UV-space area `<= uv_area_eps` (e.g. faces xatlas
    ignored, whose UVs collapse to (0, 0)). Unreferenced vertices are removed. Returns
    `(vertices, faces, uvs, vmap)` where `vmap` is the given `vmap` restricted to the kept vertices, or,
    without one, the index of every kept vertex in the input.
    """
    vertices, faces = check_mesh(vertices, faces, allow_no_faces=True)
    if uvs.dim() != 2 or uvs.shape[1] != 2 or uvs.shape[0] != vertices.shape[0]:
        raise ValueError(f"uvs must have shape [{vertices.shape[0]}, 2], got {list(uvs.shape)}")
    if vmap is not None and vmap.shape[0] != vertices.shape[0]:
        raise ValueError(f"vmap must have {vertices.shape[0]} entries, got {vmap.shape[0]}")
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    area = 0.5 * torch.linalg.norm(torch.linalg.cross(p1 - p0, p2 - p0), dim=1)
    shortest = (
        torch.stack([(p1 - p0).norm(dim=1), (p2 - p1).norm(dim=1), (p0 - p2).norm(dim=1)], 1).min(1).values
    )
    t0, t1, t2 = uvs[faces[:, 0]].double(), uvs[faces[:, 1]].double(), uvs[faces[:, 2]].double()
    e1, e2 = t1 - t0, t2 - t0
    uv_area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    bad = repeated | (area <= area_eps) | (shortest <= edge_eps) | (uv_area <= uv_area_eps)
    kept_faces = faces[~bad]
    used, new_f = referenced(kept_faces, vertices.shape[0])
    index = torch.nonzero(used).squeeze(1)
    new_v = vertices[used]
    out_map = vmap[index] if vmap is not None else index
    return new_v, new_f, uvs[index], out_map
