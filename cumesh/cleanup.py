"""Removal operations: unreferenced vertices, duplicates, degenerate faces, small components."""

from __future__ import annotations

import scipy.spatial
import torch

from .connectivity import connected_components, face_components
from .validation import check_mesh


def referenced(faces: torch.Tensor, num_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(used [V] bool, faces renumbered over the used vertices only)`: `compact` for any per-vertex data."""
    used = torch.zeros(num_vertices, dtype=torch.bool, device=faces.device)
    used[faces.reshape(-1)] = True
    new_index = torch.cumsum(used.long(), 0) - 1
    return used, new_index[faces]


def compact(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop vertices no face references, keeping the relative order of the others (no validation)."""
    used, new_faces = referenced(faces, vertices.shape[0])
    return vertices[used], new_faces


def remove_unreferenced_vertices(
    vertices: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove vertices that no face uses; order of the remaining vertices and faces is kept."""
    vertices, faces = check_mesh(vertices, faces)
    return compact(vertices, faces)


def _first_occurrence(inverse: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Smallest original index of every group given `inverse` labels."""
    idx = torch.arange(inverse.shape[0], device=inverse.device)
    first = torch.full((num_groups,), inverse.shape[0], dtype=torch.long, device=inverse.device)
    return first.scatter_reduce(0, inverse, idx, reduce="amin")


def unique_rows(rows: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(num_groups, inverse)` for int64 rows of width 3 with entries in `[0, bound)`; packs when it fits."""
    if bound**3 < 2**62:
        key = (rows[:, 0] * bound + rows[:, 1]) * bound + rows[:, 2]
        uniq, inverse = torch.unique(key, return_inverse=True)
    else:
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return uniq.shape[0], inverse


def merge_duplicate_vertices(
    vertices: torch.Tensor, faces: torch.Tensor, tol: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weld vertices with identical positions (`tol=0`) or closer than `tol` (transitively, via a k-d tree).

    Each group is represented by its lowest-index vertex (its position is kept). Faces that end up with a repeated index are
    dropped (they have no area), then unreferenced vertices are removed.
    """
    vertices, faces = check_mesh(vertices, faces)
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if tol > 0:
        tree = scipy.spatial.cKDTree(vertices.detach().cpu().double().numpy())
        pairs = torch.from_numpy(tree.query_pairs(tol, output_type="ndarray")).to(vertices.device)
        inverse = connected_components(vertices.shape[0], pairs.reshape(-1, 2).long())
        num = int(inverse.max()) + 1
    else:
        _, inverse = torch.unique(vertices, dim=0, return_inverse=True)
        num = int(inverse.max()) + 1
    representative = _first_occurrence(inverse, num)[inverse]
    new_faces = representative[faces]
    keep = (
        (new_faces[:, 0] != new_faces[:, 1])
        & (new_faces[:, 1] != new_faces[:, 2])
        & (new_faces[:, 2] != new_faces[:, 0])
    )
    new_faces = new_faces[keep]
    if new_faces.shape[0] == 0:
        return vertices[:0], new_faces
    return compact(vertices, new_faces)


def remove_duplicate_faces(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the lowest-index face of every group with the same vertex set (any order or orientation)."""
    vertices, faces = check_mesh(vertices, faces)
    num, inverse = unique_rows(torch.sort(faces, dim=1).values, vertices.shape[0])
    keep = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    keep[_first_occurrence(inverse, num)] = True
    return compact(vertices, faces[keep])


def degenerate_face_mask(
    vertices: torch.Tensor, faces: torch.Tensor, abs_thresh: float = 1e-24, rel_thresh: float = 1e-12
) -> torch.Tensor:
    """True for faces with a repeated index or `area < min(abs_thresh, rel_thresh * longest_edge^2)`."""
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    area = 0.5 * torch.linalg.norm(torch.linalg.cross(p1 - p0, p2 - p0), dim=1)
    longest_sq = (
        torch.stack([((p1 - p0) ** 2).sum(1), ((p2 - p1) ** 2).sum(1), ((p0 - p2) ** 2).sum(1)], 1)
        .max(1)
        .values
    )
    thresh = torch.clamp(rel_thresh * longest_sq, max=abs_thresh)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    return repeated | (area < thresh) | (area <= 0)


def remove_degenerate_faces(
    vertices: torch.Tensor, faces: torch.Tensor, abs_thresh: float = 1e-24, rel_thresh: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove faces with a repeated vertex index or (near-)zero area (spec §3.5), then unused vertices.

    A face is removed when `area < min(abs_thresh, rel_thresh * L_max^2)` (both conditions) or its area
    is exactly zero.
    """
    vertices, faces = check_mesh(vertices, faces)
    keep = ~degenerate_face_mask(vertices, faces, abs_thresh, rel_thresh)
    return compact(vertices, faces[keep])


def remove_small_connected_components(
    vertices: torch.Tensor, faces: torch.Tensor, min_area: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove components (faces linked across manifold edges) whose total area is below `min_area`."""
    vertices, faces = check_mesh(vertices, faces)
    labels = face_components(faces, vertices.shape[0])
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    area = 0.5 * torch.linalg.norm(torch.linalg.cross(p1 - p0, p2 - p0), dim=1).double()
    comp_area = torch.zeros(int(labels.max()) + 1, dtype=torch.float64, device=faces.device).index_add_(
        0, labels, area
    )
    keep = comp_area[labels] >= min_area
    return compact(vertices, faces[keep])
