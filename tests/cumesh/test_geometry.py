import torch

import cumesh
from tests.cumesh.conftest import to_trimesh


def test_areas_and_face_normals_match_trimesh(torus):
    v, f = torus
    mesh = to_trimesh(v, f)
    assert torch.allclose(
        cumesh.face_areas(v, f).double(), torch.tensor(mesh.area_faces), rtol=1e-4, atol=1e-9
    )
    assert torch.allclose(cumesh.face_normals(v, f).double(), torch.tensor(mesh.face_normals), atol=1e-4)


def test_vertex_normals_are_area_weighted_unit_and_radial(sphere):
    v, f = sphere
    n = cumesh.vertex_normals(v, f)
    assert torch.allclose(n.norm(dim=1), torch.ones(v.shape[0]), atol=1e-5)
    radial = v / v.norm(dim=1, keepdim=True)
    assert float((n * radial).sum(1).min()) > 0.995
    # area weighting: a vertex between a big and a tiny face follows the big one
    v2 = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1e-3], [0, -1e-3, 0]])
    f2 = torch.tensor([[0, 1, 2], [0, 4, 3]])
    n2 = cumesh.vertex_normals(v2, f2)
    assert float(n2[0, 2]) > 0.99


def test_degenerate_faces_give_zero_normals_not_nan():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])
    f = torch.tensor([[0, 1, 2]])
    assert torch.equal(cumesh.face_normals(v, f), torch.zeros(1, 3))
    vn = cumesh.vertex_normals(v, f)
    assert torch.isfinite(vn).all() and torch.allclose(vn.norm(dim=1), torch.ones(3))
