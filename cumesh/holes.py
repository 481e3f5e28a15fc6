"""Hole filling up to a perimeter: boundary loops closed by a centroid fan."""

from __future__ import annotations

import torch

from .connectivity import connected_components, edge_table, half_edges
from .validation import check_mesh


def fill_holes(
    vertices: torch.Tensor, faces: torch.Tensor, max_hole_perimeter: float = 3e-2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Close every boundary loop whose perimeter is below `max_hole_perimeter`.

    A loop is a closed chain of boundary edges (one incident face) through manifold boundary vertices
    (exactly two boundary edges, no non-manifold edge). It is filled with one new vertex at the mean of
    its edge midpoints and one triangle per boundary edge, wound to agree with the face on the other side
    of that edge. New vertices are appended; existing vertices and faces keep their order.
    """
    vertices, faces = check_mesh(vertices, faces)
    num_vertices = vertices.shape[0]
    table = edge_table(faces, num_vertices)
    src, dst = half_edges(faces)
    boundary_half = table.face_count[table.half_edge_to_edge] == 1
    b_src, b_dst = src[boundary_half], dst[boundary_half]
    if b_src.numel() == 0:
        return vertices, faces
    device = faces.device
    # vertices touching a non-manifold edge
    nm_edges = table.edges[table.face_count > 2].reshape(-1)
    bad_vertex = torch.zeros(num_vertices, dtype=torch.bool, device=device)
    bad_vertex[nm_edges] = True
    degree = torch.zeros(num_vertices, dtype=torch.long, device=device)
    degree.index_add_(0, b_src, torch.ones_like(b_src))
    degree.index_add_(0, b_dst, torch.ones_like(b_dst))
    manifold_vertex = (degree == 2) & ~bad_vertex
    # link boundary edges that share a manifold boundary vertex
    num_b = b_src.shape[0]
    ends = torch.cat([b_src, b_dst])
    edge_id = torch.arange(num_b, device=device).repeat(2)
    order = torch.argsort(ends, stable=True)
    ends_sorted, edge_sorted = ends[order], edge_id[order]
    same = ends_sorted[1:] == ends_sorted[:-1]
    link_mask = same & manifold_vertex[ends_sorted[1:]]
    links = torch.stack([edge_sorted[:-1][link_mask], edge_sorted[1:][link_mask]], 1)
    group = connected_components(num_b, links)
    num_groups = int(group.max()) + 1
    ok_edge = manifold_vertex[b_src] & manifold_vertex[b_dst]
    # uint8, not bool: CUDA has no bool scatter-reduce
    closed = torch.ones(num_groups, dtype=torch.uint8, device=device)
    closed = closed.scatter_reduce(0, group, ok_edge.to(torch.uint8), reduce="amin").bool()
    p_src, p_dst = vertices[b_src].double(), vertices[b_dst].double()
    length = torch.linalg.norm(p_dst - p_src, dim=1)
    perimeter = torch.zeros(num_groups, dtype=torch.float64, device=device).index_add_(0, group, length)
    fill = closed & (perimeter < max_hole_perimeter)
    if not bool(fill.any()):
        return vertices, faces
    new_id = torch.cumsum(fill.long(), 0) - 1
    mid_sum = torch.zeros(num_groups, 3, dtype=torch.float64, device=device).index_add_(
        0, group, 0.5 * (p_src + p_dst)
    )
    count = torch.zeros(num_groups, dtype=torch.float64, device=device).index_add_(
        0, group, torch.ones_like(length)
    )
    centres = (mid_sum / count[:, None])[fill].to(vertices.dtype)
    use = fill[group]
    fan = torch.stack([b_dst[use], b_src[use], num_vertices + new_id[group[use]]], 1)
    return torch.cat([vertices, centres]), torch.cat([faces, fan])
