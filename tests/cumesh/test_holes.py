import torch

import cumesh
from tests.cumesh.conftest import to_trimesh


def _punch(v, f, vertex):
    """Remove the one-ring of `vertex`: a hole bounded by its link."""
    keep = ~(f == vertex).any(1)
    ring = f[~keep]
    rim = torch.unique(ring[ring != vertex])
    return f[keep], rim


def _perimeter(v, f):
    mesh = to_trimesh(v, f)
    edges = mesh.edges_sorted
    uniq, counts = torch.unique(torch.tensor(edges), dim=0, return_counts=True)
    b = uniq[counts == 1]
    return float((v[b[:, 0]] - v[b[:, 1]]).norm(dim=1).sum()), b.shape[0]


def test_fill_hole_below_perimeter(sphere):
    v, f = sphere
    holed, _ = _punch(v, f, 0)
    perimeter, n_edges = _perimeter(v, holed)
    out_v, out_f = cumesh.fill_holes(v, holed, max_hole_perimeter=perimeter * 1.01)
    assert out_v.shape[0] == v.shape[0] + 1
    assert out_f.shape[0] == holed.shape[0] + n_edges
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert abs(mesh.euler_number - 2) == 0
    # the hole is strictly above the limit: nothing happens
    out_v, out_f = cumesh.fill_holes(v, holed, max_hole_perimeter=perimeter * 0.99)
    assert out_f.shape[0] == holed.shape[0]


def test_only_small_holes_are_filled(sphere):
    v, f = sphere
    holed, _ = _punch(v, f, 0)
    small_p, _ = _perimeter(v, holed)
    # a big hole: remove the one-rings of a far vertex and its neighbours
    far = int(torch.argmin(v[:, 2]))
    big_faces = (f == far).any(1)
    nbrs = torch.unique(f[big_faces])
    remove = torch.isin(f, nbrs).any(1) | (holed.shape[0] == 0)
    holed2 = torch.cat([f[~remove & ~(f == 0).any(1)]])
    big_p = _perimeter(v, holed2)[0] - small_p
    assert big_p > 2 * small_p
    out_v, out_f = cumesh.fill_holes(v, holed2, max_hole_perimeter=(small_p + big_p) / 2)
    assert out_v.shape[0] == v.shape[0] + 1
    mesh = to_trimesh(out_v, out_f)
    assert not mesh.is_watertight and mesh.is_winding_consistent


def test_closed_mesh_is_unchanged(sphere):
    v, f = sphere
    out_v, out_f = cumesh.fill_holes(v, f)
    assert torch.equal(out_v, v) and torch.equal(out_f, f)
