"""UV-space triangle rasteriser in PyTorch: which face covers each texel centre, and where inside it.

Texel `(row, col)` of an `H x W` image has its centre at `(u, v) = ((col + 0.5) / W, (row + 0.5) / H)`, so row
0 is `v = 0` (the glTF image orientation). A texel centre on an edge shared by two triangles belongs to exactly
one of them (top-left style tie rule); where UV triangles overlap, the highest face index wins. Triangles are
processed in chunks so memory stays bounded for millions of faces.
"""

from __future__ import annotations

import torch

from o_voxel.boxes import CANDIDATE_BUDGET, chunks_by_budget, enumerate_boxes


def _edge_functions(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Edge function of edge k (vertex k+1 -> k+2) at points; (P, 3), positive inside a CCW triangle."""
    x, y = tri[..., 0], tri[..., 1]
    x1, y1 = x.roll(-1, -1), y.roll(-1, -1)
    x2, y2 = x.roll(-2, -1), y.roll(-2, -1)
    return (x2 - x1) * (py[:, None] - y1) - (y2 - y1) * (px[:, None] - x1)


def _covers(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Whether each triangle (P, 3, 2) covers its point, with a consistent rule for shared edges."""
    edge = _edge_functions(tri, px, py)
    area2 = edge.sum(-1)
    sign = torch.sign(area2)
    edge = edge * sign[:, None]
    x, y = tri[..., 0], tri[..., 1]
    dx = (x.roll(-2, -1) - x.roll(-1, -1)) * sign[:, None]
    dy = (y.roll(-2, -1) - y.roll(-1, -1)) * sign[:, None]
    # inward normal (-dy, dx): a point on the edge counts when the triangle lies below it, or left of it
    tie = (dx < 0) | ((dx == 0) & (dy > 0))
    return ((edge > 0) | ((edge == 0) & tie)).all(-1) & (area2 != 0)


def rasterize_uv(
    uvs: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    budget: int = CANDIDATE_BUDGET,
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
    counts = (hi - lo + 1).clamp(min=0).prod(-1)
    face_id = torch.full((height * width,), -1, dtype=torch.int64, device=device)
    for start, end in chunks_by_budget(counts, budget):
        owner, pts = enumerate_boxes(lo[start:end], hi[start:end])
        if owner.numel() == 0:
            continue
        owner = owner + start
        inside = _covers(tri[owner], pts[:, 0].to(torch.float64), pts[:, 1].to(torch.float64))
        flat = pts[inside, 1] * width + pts[inside, 0]
        face_id.scatter_reduce_(0, flat, owner[inside], reduce="amax")
    covered = torch.nonzero(face_id >= 0).squeeze(1)
    bary = torch.zeros(height * width, 3, dtype=torch.float32, device=device)
    if covered.numel():
        t = tri[face_id[covered]]
        px = (covered % width).to(torch.float64)
        py = (covered // width).to(torch.float64)
        edge = _edge_functions(t, px, py)
        bary[covered] = (edge / edge.sum(-1, keepdim=True)).to(torch.float32)
    return face_id.reshape(height, width), bary.reshape(height, width, 3)
