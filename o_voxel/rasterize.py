"""UV-space triangle rasteriser in PyTorch: which face covers each texel centre, and where inside it.

Texel `(row, col)` of an `H x W` image has its centre at `(u, v) = ((col + 0.5) / W, (row + 0.5) / H)`, so row
0 is `v = 0` (the glTF image orientation). A texel centre on an edge shared by two triangles belongs to exactly
one of them (top-left style tie rule); where UV triangles overlap, the highest face index wins. Triangles are
processed in chunks so memory stays bounded for millions of faces.
"""

from __future__ import annotations

import torch

from o_voxel.boxes import chunks_by_budget, enumerate_boxes


def _edge_coefficients(tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge k (vertex k+1 -> k+2) as `e(p) = A px + B py + C` (each (F, 3)), signed so that e > 0 inside.

    The coefficient form is exactly antisymmetric for the two triangles sharing an edge, so a texel centre
    on that edge gets e == 0 in both and the tie rule hands it to exactly one of them. Also returns the tie
    flag (F, 3): a point on edge k counts when the triangle lies below it, or left of a vertical edge.
    """
    x, y = tri[..., 0], tri[..., 1]
    xi, yi = x.roll(-1, -1), y.roll(-1, -1)
    xj, yj = x.roll(-2, -1), y.roll(-2, -1)
    a = yi - yj
    b = xj - xi
    c = xi * yj - yi * xj
    area2 = a[:, 0] * x[:, 0] + b[:, 0] * y[:, 0] + c[:, 0]
    sign = torch.sign(area2)[:, None]
    a, b, c = a * sign, b * sign, c * sign
    tie = (b < 0) | ((b == 0) & (a < 0))
    return a, b, c, tie


def rasterize_uv(
    uvs: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    budget: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise UV triangles `uvs (V, 2)`, `faces (F, 3)` into an `height x width` texel grid.

    Returns `(face_id (H, W) int64, -1 where no face covers the texel centre; barycentrics (H, W, 3) float32,
    zero where uncovered)`, with `uv = sum_k bary[k] * uvs[faces[face_id, k]]`.
    """
    device = uvs.device
    if faces.shape[0] == 0:
        return (
            torch.full((height, width), -1, dtype=torch.int64, device=device),
            torch.zeros(height, width, 3, dtype=torch.float32, device=device),
        )
    scale = torch.tensor([width, height], dtype=torch.float64, device=device)
    pix = uvs.to(torch.float64) * scale - 0.5  # texel centres at integer (col, row)
    tri = pix[faces]  # (F, 3, 2)
    lo = torch.ceil(tri.min(1).values).clamp(min=0)
    hi = torch.minimum(torch.floor(tri.max(1).values), scale - 1)
    finite = torch.isfinite(tri).all(-1).all(-1)
    lo = torch.where(finite[:, None], lo, torch.ones_like(lo)).to(torch.int64)
    hi = torch.where(finite[:, None], hi, torch.zeros_like(hi)).to(torch.int64)
    coef_a, coef_b, coef_c, tie = _edge_coefficients(tri)
    nondegenerate = (coef_a[:, 0] * tri[:, 0, 0] + coef_b[:, 0] * tri[:, 0, 1] + coef_c[:, 0]) > 0
    counts = torch.where(nondegenerate, (hi - lo + 1).clamp(min=0).prod(-1), torch.zeros_like(lo[:, 0]))
    packed = torch.cat([coef_a, coef_b, coef_c, tie.to(torch.float64)], 1)  # one gather per chunk
    hits_texel, hits_face = [], []
    for start, end in chunks_by_budget(counts, budget):
        owner, pts = enumerate_boxes(lo[start:end], hi[start:end])
        if owner.numel() == 0:
            continue
        owner = owner + start
        px, py = pts[:, 0:1].to(torch.float64), pts[:, 1:2].to(torch.float64)
        cf = packed[owner]
        e = cf[:, 0:3] * px + cf[:, 3:6] * py + cf[:, 6:9]
        inside = ((e > 0) | ((e == 0) & (cf[:, 9:12] > 0))).all(-1)
        hits_texel.append(pts[inside, 1] * width + pts[inside, 0])
        hits_face.append(owner[inside])
    face_id = torch.full((height * width,), -1, dtype=torch.int64, device=device)
    if hits_texel:  # one scatter at the end: a scatter per chunk would touch the whole image each time
        face_id.scatter_reduce_(0, torch.cat(hits_texel), torch.cat(hits_face), reduce="amax")
    covered = torch.nonzero(face_id >= 0).squeeze(1)
    bary = torch.zeros(height * width, 3, dtype=torch.float32, device=device)
    if covered.numel():
        owner = face_id[covered]
        px = (covered % width).to(torch.float64)[:, None]
        py = (covered // width).to(torch.float64)[:, None]
        edge = coef_a[owner] * px + coef_b[owner] * py + coef_c[owner]
        bary[covered] = (edge / edge.sum(-1, keepdim=True)).to(torch.float32)
    return face_id.reshape(height, width), bary.reshape(height, width, 3)
