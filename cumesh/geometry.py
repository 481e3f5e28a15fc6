"""Per-face and per-vertex geometric quantities."""

from __future__ import annotations

import torch

from .validation import check_mesh


def _face_cross(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return torch.linalg.cross(p1 - p0, p2 - p0)


def face_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas `[F]`."""
    vertices, faces = check_mesh(vertices, faces)
    return 0.5 * torch.linalg.norm(_face_cross(vertices, faces), dim=1)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals `[F, 3]` (right-hand rule); zero vectors for zero-area faces, never NaN."""
    vertices, faces = check_mesh(vertices, faces)
    cross = _face_cross(vertices, faces)
    norm = torch.linalg.norm(cross, dim=1, keepdim=True)
    return torch.where(
        norm > 0, cross / norm.clamp_min(torch.finfo(cross.dtype).tiny), torch.zeros_like(cross)
    )


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals `[V, 3]`.

    A vertex whose weighted sum vanishes (unreferenced, or only zero-area faces) gets `(0, 0, 1)`, so
    every row is a unit vector.
    """
    vertices, faces = check_mesh(vertices, faces)
    cross = _face_cross(vertices, faces)
    acc = torch.zeros_like(vertices)
    for k in range(3):
        acc.index_add_(0, faces[:, k], cross)
    norm = torch.linalg.norm(acc, dim=1, keepdim=True)
    fallback = torch.zeros_like(acc)
    fallback[:, 2] = 1
    return torch.where(norm > 0, acc / norm.clamp_min(torch.finfo(acc.dtype).tiny), fallback)
