import torch

import cumesh
from cumesh.connectivity import edge_table
from tests.cumesh.conftest import to_trimesh


def test_non_manifold_fin_is_split():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1]])
    f = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])  # three faces on edge (0, 1)
    assert int(edge_table(f, 5).face_count.max()) == 3
    out_v, out_f = cumesh.repair_non_manifold_edges(v, f)
    assert int(edge_table(out_f, out_v.shape[0]).face_count.max()) <= 2
    assert torch.equal(out_v[out_f], v[f])  # same triangles, same order


def test_bow_tie_vertex_is_split():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [-1, 0, 0], [-1, -1, 0]])
    f = torch.tensor([[0, 1, 2], [0, 3, 4]])
    out_v, out_f = cumesh.repair_non_manifold_edges(v, f)
    assert out_v.shape[0] == 6
    assert torch.equal(out_v[out_f], v[f])


def test_closed_manifold_mesh_keeps_its_topology(sphere):
    v, f = sphere
    out_v, out_f = cumesh.repair_non_manifold_edges(v, f)
    assert out_v.shape[0] == v.shape[0]
    assert to_trimesh(out_v, out_f).is_watertight


def test_unify_face_orientations_follows_lowest_face(sphere):
    v, f = sphere
    g = torch.Generator().manual_seed(0)
    flip = torch.rand(f.shape[0], generator=g) < 0.4
    flip[0] = False
    scrambled = torch.where(flip[:, None], f[:, [0, 2, 1]], f)
    assert not to_trimesh(v, scrambled).is_winding_consistent
    _, out_f = cumesh.unify_face_orientations(v, scrambled)
    assert torch.equal(out_f, f)
    # lowest face flipped: the whole component follows it (inward)
    scrambled[0] = f[0, [0, 2, 1]]
    _, out_f = cumesh.unify_face_orientations(v, scrambled)
    assert torch.equal(out_f, f[:, [0, 2, 1]])
    assert to_trimesh(v, out_f).volume < 0


def test_unify_handles_separate_components(sphere):
    v, f = sphere
    v2 = torch.cat([v, v + 2])
    f2 = torch.cat([f, f[:, [0, 2, 1]] + v.shape[0]])
    _, out_f = cumesh.unify_face_orientations(v2, f2)
    assert torch.equal(out_f, f2)  # each component is consistent on its own
