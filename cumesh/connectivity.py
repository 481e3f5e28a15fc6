"""Edges, manifold face adjacency and connected components (identity by vertex index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch


@dataclass
class EdgeTable:
    """Unique undirected edges of a triangle mesh.

    `edges[E, 2]` sorted pairs `(lo, hi)`; `half_edge_to_edge[3F]` maps half-edge `3f+i` (from corner `i`
    to corner `i+1` of face `f`) to its edge; `face_count[E]` is the number of incident half-edges.
    """

    edges: torch.Tensor
    half_edge_to_edge: torch.Tensor
    face_count: torch.Tensor


def half_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed half-edges `(src, dst)`, each `[3F]`, ordered `3f + i` for corner `i` of face `f`."""
    src = faces.reshape(-1)
    dst = faces[:, [1, 2, 0]].reshape(-1)
    return src, dst


def edge_table(faces: torch.Tensor, num_vertices: int) -> EdgeTable:
    """Build the unique edge list of `faces`."""
    uniq, inverse, counts = torch.unique(
        _edge_keys(faces, num_vertices), return_inverse=True, return_counts=True
    )
    edges = torch.stack([uniq // num_vertices, uniq % num_vertices], dim=1)
    return EdgeTable(edges=edges, half_edge_to_edge=inverse, face_count=counts)


def _edge_keys(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    src, dst = half_edges(faces)
    return torch.minimum(src, dst) * num_vertices + torch.maximum(src, dst)


def unique_edges(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """`edge_table(...).edges` alone (the same sorted `[E, 2]` pairs) for a fraction of its peak memory."""
    uniq = torch.unique(_edge_keys(faces, num_vertices))
    return torch.stack([uniq // num_vertices, uniq % num_vertices], dim=1)


def boundary_half_edges(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """Ids `3f + i` of the half-edges whose undirected edge belongs to no other half-edge, ascending."""
    key, order = torch.sort(_edge_keys(faces, num_vertices))
    alone = torch.ones_like(key, dtype=torch.bool)
    same = key[1:] == key[:-1]
    alone[1:] &= ~same
    alone[:-1] &= ~same
    del key, same
    return torch.sort(order[alone]).values


def manifold_half_edge_pairs(table: EdgeTable) -> torch.Tensor:
    """For every edge with exactly two incident half-edges in two different faces: `[M, 2]` half-edge ids."""
    order = torch.argsort(table.half_edge_to_edge, stable=True)
    sorted_edges = table.half_edge_to_edge[order]
    count = table.face_count[sorted_edges]
    # first half-edge of each pair: its successor belongs to the same edge
    first = (count == 2) & torch.cat(
        [sorted_edges[1:] == sorted_edges[:-1], sorted_edges.new_zeros(1, dtype=torch.bool)]
    )
    idx = torch.nonzero(first).squeeze(1)
    pairs = torch.stack([order[idx], order[idx + 1]], dim=1)
    return pairs[(pairs[:, 0] // 3) != (pairs[:, 1] // 3)]


def connected_components(num_nodes: int, links: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Component label per node (`[num_nodes]` int64 on the links' device) for undirected `links [L, 2]`.

    Labels are numbered by the smallest node of each component, in ascending order, so they are
    deterministic. `method`: `"scipy"` (union-find on the CPU), `"torch"` (parallel hooking and pointer
    jumping on the links' device), `"auto"`: torch on CUDA, SciPy on the CPU.
    """
    device = links.device
    if num_nodes == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    if method == "torch" or (method == "auto" and device.type == "cuda"):
        return _components_torch(num_nodes, links)
    lk = links.detach().cpu().numpy().astype(np.int64, copy=False)
    graph = scipy.sparse.coo_matrix(
        (np.ones(lk.shape[0], dtype=np.int8), (lk[:, 0], lk[:, 1])), shape=(num_nodes, num_nodes)
    ).tocsr()
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    # renumber by first occurrence so the order is canonical
    _, first = np.unique(labels, return_index=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.shape[0])
    return torch.from_numpy(rank[labels]).to(device)


def face_components(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """Component label per face, faces linked only across manifold edges (CuMesh semantics)."""
    pairs = manifold_half_edge_pairs(edge_table(faces, num_vertices)) // 3
    return connected_components(faces.shape[0], pairs)


def _components_torch(num_nodes: int, links: torch.Tensor) -> torch.Tensor:
    """Min-label hooking with full pointer jumping; every root ends as its component's smallest node."""
    device = links.device
    parent = torch.arange(num_nodes, device=device)
    a, b = links[:, 0].long(), links[:, 1].long()
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not bool(differ.any()):
            break
        lo, hi = torch.minimum(pa, pb)[differ], torch.maximum(pa, pb)[differ]
        parent.scatter_reduce_(0, hi, lo, reduce="amin")
        while True:  # pointer jumping until every node points at a root
            grand = parent[parent]
            if bool((grand == parent).all()):
                break
            parent = grand
    roots, labels = torch.unique(parent, return_inverse=True)  # roots ascending = smallest nodes ascending
    return labels
