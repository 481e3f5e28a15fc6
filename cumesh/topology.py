"""Clean topology for export: one checker (`check_topology`) and one repair pass (`clean_topology`).

Both look at the mesh welded by exact vertex position, so seam-split or repair-split copies of a vertex count
as one point (that is what Blender's Merge by Distance, slicers and the validator see). Defects:

- degenerate: a face with a repeated vertex index or position, or (near-)zero area: its height over the
  longest edge at most `1e-6 * longest_edge + 1e-7 * max|coordinate|` (float32 rounding of a point on a line);
- duplicate: a face with the same vertex-index set as an earlier face (any order or orientation);
- coincident: a face with the same vertex-position set as an earlier face but other indices;
- inconsistent winding: a manifold edge (two faces) walked in the same direction by both faces;
- inward closed part: a closed, manifold, consistently wound component with negative signed volume
  (nested shells are not told apart: every closed part is expected to face outward);
- normal mismatch (only with vertex normals): a face whose geometric normal points away from the sum of its
  three corner normals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .cleanup import compact
from .connectivity import connected_components, edge_table, manifold_half_edge_pairs
from .repair import unify_face_orientations
from .validation import check_mesh

_REL_HEIGHT = 1e-6
_ABS_HEIGHT = 1e-7  # times the largest coordinate magnitude: float32 resolution


@dataclass(frozen=True)
class TopologyReport:
    """Defect counts of one mesh (see the module docstring for each definition)."""

    faces: int
    degenerate: int
    duplicate: int
    coincident: int
    inconsistent_winding: int
    inward_closed_parts: int
    normal_mismatch: int

    @property
    def clean(self) -> bool:
        """True when every defect count is zero."""
        return not any(v for k, v in asdict(self).items() if k != "faces")

    def raise_if_defective(self, what: str = "mesh") -> None:
        """Raise `ValueError` naming every non-zero defect count."""
        if not self.clean:
            bad = {k: v for k, v in asdict(self).items() if k != "faces" and v}
            raise ValueError(f"{what} has topology defects ({self.faces} faces): {bad}")


def position_ids(vertices: torch.Tensor) -> torch.Tensor:
    """Id per vertex shared by all vertices at exactly the same position `[V]` int64 (float32 bit keys)."""
    if vertices.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=vertices.device)
    bits = (vertices.to(torch.float32) + 0.0).view(torch.int32).long() & 0xFFFFFFFF  # -0.0 -> +0.0
    _, xy = torch.unique((bits[:, 0] << 32) | bits[:, 1], return_inverse=True)
    return torch.unique((xy << 32) | bits[:, 2], return_inverse=True)[1]


def degenerate_mask(vertices: torch.Tensor, faces: torch.Tensor, pos_faces: torch.Tensor) -> torch.Tensor:
    """True per face with a repeated index or position, or a height below the module's zero-area tolerance."""
    p = vertices.double()[faces]
    e0, e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 1], p[:, 0] - p[:, 2]
    area = 0.5 * torch.linalg.norm(torch.linalg.cross(e0, -e2), dim=1)
    longest = torch.stack([(e0 * e0).sum(1), (e1 * e1).sum(1), (e2 * e2).sum(1)], 1).max(1).values
    repeated = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    for g in (faces, pos_faces):
        repeated |= (g[:, 0] == g[:, 1]) | (g[:, 1] == g[:, 2]) | (g[:, 2] == g[:, 0])
    longest = longest.sqrt()
    scale = float(vertices.abs().max()) if vertices.numel() else 0.0
    height = 2 * area / longest.clamp_min(1e-300)
    return repeated | (area <= 0) | (height <= _REL_HEIGHT * longest + _ABS_HEIGHT * scale)


def _triple_groups(tri: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`(group id per face, orientation sign +-1 per face, number of groups)` of unordered index triples."""
    srt = torch.sort(tri, dim=1).values
    if bound**3 < 2**62:
        key = (srt[:, 0] * bound + srt[:, 1]) * bound + srt[:, 2]
        uniq, inverse = torch.unique(key, return_inverse=True)
    else:
        uniq, inverse = torch.unique(srt, dim=0, return_inverse=True)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    inversions = (a > b).long() + (a > c).long() + (b > c).long()
    sign = 1 - 2 * (inversions % 2)
    return inverse, sign, int(uniq.shape[0])


def _winding_pairs(
    pos_faces: torch.Tensor, num_points: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Manifold half-edge pairs `[M, 2]`, whether each pair disagrees, and per-face 'on a non-2-face edge'."""
    table = edge_table(pos_faces, num_points)
    pairs = manifold_half_edge_pairs(table)
    flat = pos_faces.reshape(-1)
    disagree = flat[pairs[:, 0]] == flat[pairs[:, 1]]
    open_edge = (table.face_count != 2)[table.half_edge_to_edge].reshape(-1, 3).any(1)
    return pairs, disagree, open_edge


def _part_volumes(
    vertices: torch.Tensor, faces: torch.Tensor, winding: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(component per face, signed volume per component, closed flag per component)` from `_winding_pairs`."""
    pairs, disagree, open_edge = winding
    comp = connected_components(faces.shape[0], pairs // 3)
    num = int(comp.max()) + 1 if comp.numel() else 0
    closed = torch.ones(num, dtype=torch.uint8, device=faces.device)  # uint8: CUDA has no bool scatter-reduce
    closed = closed.scatter_reduce_(0, comp, (~open_edge).to(torch.uint8), reduce="amin").bool()
    if disagree.any():  # a component with inconsistent winding has no meaningful volume
        closed[comp[pairs[disagree, 0] // 3]] = False
    p = vertices.double()
    p = p - p.mean(0)
    tri = p[faces]
    vol = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum(1) / 6.0
    volume = torch.zeros(num, dtype=torch.float64, device=faces.device).index_add_(0, comp, vol)
    return comp, volume, closed


def _inward(volume: torch.Tensor, closed: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    extent = float((vertices.max(0).values - vertices.min(0).values).max()) if vertices.shape[0] else 0.0
    return closed & (volume < -1e-12 * extent**3)


def check_topology(
    vertices: torch.Tensor, faces: torch.Tensor, normals: torch.Tensor | None = None
) -> TopologyReport:
    """Count every export defect of a triangle mesh (optionally with per-vertex `normals [V, 3]`)."""
    vertices, faces = check_mesh(vertices, faces, allow_no_faces=True)
    n = faces.shape[0]
    if n == 0:
        return TopologyReport(0, 0, 0, 0, 0, 0, 0)
    pid = position_ids(vertices)
    pos_faces = pid[faces]
    bad = degenerate_mask(vertices, faces, pos_faces)
    _, _, idx_groups = _triple_groups(faces, vertices.shape[0])
    _, _, pos_groups = _triple_groups(pos_faces, vertices.shape[0])
    good = torch.nonzero(~bad).squeeze(1)
    num_points = int(pid.max()) + 1
    inconsistent = inward = mismatch = 0
    if good.numel():
        winding = _winding_pairs(pos_faces[good], num_points)
        inconsistent = int(winding[1].sum())
        _, volume, closed = _part_volumes(vertices, faces[good], winding)
        inward = int(_inward(volume, closed, vertices).sum())
    if normals is not None:
        if normals.shape != vertices.shape:
            raise ValueError(f"normals must have shape {list(vertices.shape)}, got {list(normals.shape)}")
        p = vertices.double()[faces]
        fn = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        corner = normals.double()[faces].sum(1)
        mismatch = int((((fn * corner).sum(1) <= 0) & ~bad).sum())
    return TopologyReport(
        faces=n,
        degenerate=int(bad.sum()),
        duplicate=n - idx_groups,
        coincident=idx_groups - pos_groups,
        inconsistent_winding=inconsistent,
        inward_closed_parts=inward,
        normal_mismatch=mismatch,
    )


def clean_topology(
    vertices: torch.Tensor, faces: torch.Tensor, orient: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove degenerate, duplicate and coincident faces; make winding consistent and closed parts outward.

    Faces sharing one vertex-position set cancel by orientation: opposite pairs (a back-to-back fin, a
    zero-volume fold) go together, and one face of the majority orientation stays when they do not balance.
    With `orient`, each welded manifold-connected component gets the winding of its first face
    (`unify_face_orientations` on the welded mesh) and closed components with negative volume are flipped.
    Unreferenced vertices are removed; the order of the surviving vertices and faces is kept.
    """
    vertices, faces = check_mesh(vertices, faces)
    pid = position_ids(vertices)
    pos_faces = pid[faces]
    keep = ~degenerate_mask(vertices, faces, pos_faces)
    faces, pos_faces = faces[keep], pos_faces[keep]
    if faces.shape[0] == 0:
        return vertices[:0], faces
    group, sign, num = _triple_groups(pos_faces, vertices.shape[0])
    net = torch.zeros(num, dtype=torch.long, device=faces.device).index_add_(0, group, sign)
    majority = sign == torch.sign(net)[group]
    ids = torch.arange(faces.shape[0], device=faces.device)
    first = torch.full((num,), faces.shape[0], dtype=torch.long, device=faces.device)
    first.scatter_reduce_(
        0, group, torch.where(majority, ids, torch.full_like(ids, faces.shape[0])), reduce="amin"
    )
    keep = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    winners = first[first < faces.shape[0]]
    keep[winners] = True
    faces, pos_faces = faces[keep], pos_faces[keep]
    if faces.shape[0] == 0:
        return vertices[:0], faces
    if orient:
        num_points = int(pid.max()) + 1
        winding = _winding_pairs(pos_faces, num_points)
        if bool(
            winding[1].any()
        ):  # inconsistent somewhere: unify on the welded mesh (rare after the first pass)
            _, unified = unify_face_orientations(vertices.new_zeros(num_points, 3), pos_faces)
            flip = (unified != pos_faces).any(1)
            faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
            winding = _winding_pairs(unified, num_points)
        comp, volume, closed = _part_volumes(vertices, faces, winding)
        inward = _inward(volume, closed, vertices)
        if bool(inward.any()):
            flip = inward[comp]
            faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return compact(vertices, faces)


def split_normal_mismatches(
    vertices: torch.Tensor, faces: torch.Tensor, normals: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give faces whose corner normals oppose their winding their own corner vertices with the face normal.

    Returns `(faces [F, 3], normals [V', 3], source [V'])`: vertex `k` of the result copies input vertex
    `source[k]` (gather positions, UVs, ... with it); only the mismatching faces get new vertices (appended).
    """
    vertices, faces = check_mesh(vertices, faces)
    p = vertices.double()[faces]
    fn = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    bad = (fn * normals.double()[faces].sum(1)).sum(1) <= 0
    source = torch.arange(vertices.shape[0], device=faces.device)
    if not bool(bad.any()):
        return faces, normals, source
    idx = torch.nonzero(bad).squeeze(1)
    unit = fn[idx] / torch.linalg.norm(fn[idx], dim=1, keepdim=True).clamp_min(1e-300)
    new_ids = vertices.shape[0] + torch.arange(3 * idx.numel(), device=faces.device).reshape(-1, 3)
    out = faces.clone()
    out[idx] = new_ids
    new_normals = torch.cat([normals, unit.to(normals.dtype).repeat_interleave(3, 0)])
    return out, new_normals, torch.cat([source, faces[idx].reshape(-1)])
