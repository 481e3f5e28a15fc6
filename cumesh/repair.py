"""Topology repair: split non-manifold edges/vertices, make face winding consistent."""

from __future__ import annotations

import torch

from .connectivity import connected_components, edge_table, manifold_half_edge_pairs
from .validation import check_mesh


def repair_non_manifold_edges(
    vertices: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split vertices wherever their faces are not connected through manifold edges.

    Every face corner starts as its own vertex; corners of two faces sharing a manifold edge are joined
    at both edge endpoints. Each joined class becomes one output vertex (same position), so non-manifold
    edges, bow-tie vertices and faces touching only at a vertex get separate copies. Face order is kept;
    new vertices are ordered by their first corner. Positions are duplicated by design.
    """
    vertices, faces = check_mesh(vertices, faces)
    num_faces = faces.shape[0]
    pairs = manifold_half_edge_pairs(edge_table(faces, vertices.shape[0]))
    corner = torch.arange(3 * num_faces, device=faces.device)
    flat = faces.reshape(-1)
    h1, h2 = pairs[:, 0], pairs[:, 1]
    next_corner = lambda h: (h // 3) * 3 + (h % 3 + 1) % 3  # noqa: E731
    a1, b1 = corner[h1], next_corner(h1)
    a2, b2 = corner[h2], next_corner(h2)
    same_dir = flat[a1] == flat[a2]
    match_a = torch.where(same_dir, a2, b2)
    match_b = torch.where(same_dir, b2, a2)
    links = torch.cat([torch.stack([a1, match_a], 1), torch.stack([b1, match_b], 1)])
    labels = connected_components(3 * num_faces, links)
    first_corner = torch.full((int(labels.max()) + 1,), 3 * num_faces, dtype=torch.long, device=faces.device)
    first_corner = first_corner.scatter_reduce(0, labels, corner, reduce="amin")
    return vertices[flat[first_corner]], labels.reshape(num_faces, 3)


def unify_face_orientations(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the winding consistent inside every manifold-connected component.

    Each component keeps the winding of its lowest-index face; faces whose parity differs are flipped
    (`(a, b, c) -> (a, c, b)`). Non-orientable components (Moebius-like) are left unchanged. Faces linked
    only across non-manifold edges are independent components. Vertices are untouched.
    """
    vertices, faces = check_mesh(vertices, faces)
    num_faces = faces.shape[0]
    pairs = manifold_half_edge_pairs(edge_table(faces, vertices.shape[0]))
    flat = faces.reshape(-1)
    f1, f2 = pairs[:, 0] // 3, pairs[:, 1] // 3
    # same direction along the shared edge -> the two faces disagree
    flipped = flat[pairs[:, 0]] == flat[pairs[:, 1]]
    comp = connected_components(num_faces, torch.stack([f1, f2], 1))
    # signed graph on 2F nodes: node f = "f as is", node F+f = "f flipped"
    shift = flipped.long() * num_faces
    links = torch.cat(
        [torch.stack([f1, f2 + shift], 1), torch.stack([f1 + num_faces, f2 + num_faces - shift], 1)]
    )
    signed = connected_components(2 * num_faces, links)
    root = torch.full((int(comp.max()) + 1,), num_faces, dtype=torch.long, device=faces.device)
    root = root.scatter_reduce(0, comp, torch.arange(num_faces, device=faces.device), reduce="amin")[comp]
    ids = torch.arange(num_faces, device=faces.device)
    orientable = signed[ids] != signed[ids + num_faces]
    flip = orientable[root] & (signed[ids] != signed[root])
    out = faces.clone()
    out[flip, 1], out[flip, 2] = faces[flip, 2], faces[flip, 1]
    return vertices, out
