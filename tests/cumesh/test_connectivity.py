import pytest
import torch

from cumesh.connectivity import (
    boundary_half_edges,
    connected_components,
    edge_table,
    manifold_half_edge_pairs,
    unique_edges,
)


@pytest.mark.parametrize("num_nodes,num_links", [(7, 0), (2000, 1000), (5000, 9000)])
def test_torch_components_match_scipy(num_nodes, num_links):
    g = torch.Generator().manual_seed(num_links)
    links = torch.randint(0, num_nodes, (num_links, 2), generator=g)
    ref = connected_components(num_nodes, links, method="scipy")
    assert torch.equal(connected_components(num_nodes, links, method="torch"), ref)
    # labels are ordered by each component's smallest node
    first = torch.full((int(ref.max()) + 1,), num_nodes).scatter_reduce(
        0, ref, torch.arange(num_nodes), reduce="amin"
    )
    assert torch.equal(torch.argsort(first), torch.arange(first.numel()))


def test_long_chain_in_random_order():
    n = 20000
    perm = torch.randperm(n - 1, generator=torch.Generator().manual_seed(0))
    links = torch.stack([torch.arange(n - 1), torch.arange(1, n)], 1)[perm]
    assert int(connected_components(n, links, method="torch").max()) == 0


def test_edge_table_and_manifold_pairs():
    f = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4], [2, 1, 5]])
    table = edge_table(f, 6)
    assert table.edges.shape[0] == 9
    assert int(table.face_count.max()) == 3  # edge (0, 1) has three faces: not manifold
    pairs = manifold_half_edge_pairs(table) // 3
    assert pairs.tolist() == [[0, 3]]  # only edge (1, 2) is shared by exactly two faces


@pytest.mark.parametrize("seed", range(5))
def test_lean_edge_queries_match_the_edge_table(seed):
    """`unique_edges` and `boundary_half_edges` (used by simplify to save memory) agree with `edge_table`."""
    g = torch.Generator().manual_seed(seed)
    faces = torch.randint(0, 40, (300, 3), generator=g)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    table = edge_table(faces, 40)
    assert torch.equal(unique_edges(faces, 40), table.edges)
    lonely = torch.nonzero(table.face_count[table.half_edge_to_edge] == 1).squeeze(1)
    assert lonely.numel() > 0
    assert torch.equal(boundary_half_edges(faces, 40), lonely)
