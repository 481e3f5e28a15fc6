"""Input checks shared by every mesh operation: one place, clear messages."""

from __future__ import annotations

import torch


def check_mesh(
    vertices: torch.Tensor, faces: torch.Tensor, *, allow_no_faces: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a triangle mesh and return `(vertices, faces)` with faces as int64 on the vertices' device.

    Raises `ValueError` for wrong shapes or dtypes, an empty mesh, non-finite coordinates and face
    indices outside `[0, V)`. The inputs are never modified.
    """
    if not torch.is_tensor(vertices) or not torch.is_tensor(faces):
        raise ValueError("vertices and faces must be torch tensors")
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {list(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape [F, 3] (triangles), got {list(faces.shape)}")
    if not vertices.is_floating_point():
        raise ValueError(f"vertices must be a floating point tensor, got {vertices.dtype}")
    if faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces must be int32 or int64, got {faces.dtype}")
    if faces.device != vertices.device:
        raise ValueError(f"vertices are on {vertices.device} but faces on {faces.device}")
    if faces.shape[0] == 0 and not allow_no_faces:
        raise ValueError("the mesh is empty: it has no faces")
    if vertices.shape[0] == 0 and faces.shape[0] > 0:
        raise ValueError("the mesh has faces but no vertices")
    if vertices.numel() and not bool(torch.isfinite(vertices).all()):
        bad = int((~torch.isfinite(vertices)).any(dim=1).sum())
        raise ValueError(f"{bad} vertices have NaN or infinite coordinates")
    faces = faces.long()
    if faces.numel():
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= vertices.shape[0]:
            raise ValueError(
                f"face indices must lie in [0, {vertices.shape[0]}) (number of vertices), found range [{lo}, {hi}]"
            )
    return vertices, faces


def check_points(points: torch.Tensor, name: str = "points") -> torch.Tensor:
    """Validate a `[P, 3]` float tensor of finite query points."""
    if not torch.is_tensor(points) or points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must be a tensor of shape [P, 3]")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {points.dtype}")
    if points.numel() and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} contain NaN or infinite coordinates")
    return points
