import torch
import trimesh

import cumesh
from tests.cumesh.conftest import to_torch, to_trimesh


def test_remove_unreferenced_vertices_keeps_geometry(sphere):
    v, f = sphere
    extra = torch.tensor([[5.0, 5, 5], [6.0, 6, 6]])
    v2 = torch.cat([extra[:1], v, extra[1:]])
    out_v, out_f = cumesh.remove_unreferenced_vertices(v2, f + 1)
    assert out_v.shape[0] == v.shape[0]
    assert torch.equal(out_v[out_f], v[f])


def test_merge_duplicate_vertices_rewelds_a_split_mesh(sphere):
    v, f = sphere
    split_v, split_f = v[f].reshape(-1, 3), torch.arange(3 * f.shape[0]).reshape(-1, 3)
    out_v, out_f = cumesh.merge_duplicate_vertices(split_v, split_f)
    assert out_v.shape[0] == v.shape[0] and out_f.shape[0] == f.shape[0]
    assert to_trimesh(out_v, out_f).is_watertight
    jitter = split_v + 1e-7 * torch.randn_like(split_v)
    out_v, out_f = cumesh.merge_duplicate_vertices(jitter, split_f, tol=1e-4)
    assert out_v.shape[0] == v.shape[0]
    assert out_f.shape[0] == f.shape[0]


def test_remove_duplicate_faces_ignores_order_and_orientation(sphere):
    v, f = sphere
    planted = torch.cat([f, f[:5, [1, 2, 0]], f[5:10, [0, 2, 1]], f[:3]])
    out_v, out_f = cumesh.remove_duplicate_faces(v, planted)
    assert out_f.shape[0] == f.shape[0]
    assert torch.equal(out_v[out_f], v[f])  # lowest index survives, order kept


def test_remove_degenerate_faces_removes_only_zero_area(sphere):
    v, f = sphere
    nv = v.shape[0]
    v2 = torch.cat([v, torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0], [0.0, 1e-3, 0]])])
    planted = torch.cat(
        [
            f,
            torch.tensor([[0, 0, 1]]),  # repeated index
            torch.tensor([[nv, nv + 1, nv + 2]]),  # collinear: zero area
            torch.tensor([[nv, nv + 1, nv + 3]]),  # small but real triangle: kept
        ]
    )
    out_v, out_f = cumesh.remove_degenerate_faces(v2, planted)
    assert out_f.shape[0] == f.shape[0] + 1
    assert out_v.shape[0] == nv + 3


def test_remove_small_connected_components(sphere):
    v, f = sphere
    small = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    sv, sf = to_torch(small)
    v2 = torch.cat([v, sv + 2.0, sv - 2.0])
    f2 = torch.cat([f, sf + v.shape[0], sf + v.shape[0] + sv.shape[0]])
    small_area = float(cumesh.face_areas(sv, sf).sum())
    out_v, out_f = cumesh.remove_small_connected_components(v2, f2, min_area=10 * small_area)
    assert out_f.shape[0] == f.shape[0] and out_v.shape[0] == v.shape[0]
    out_v, out_f = cumesh.remove_small_connected_components(v2, f2, min_area=0.5 * small_area)
    assert out_f.shape[0] == f2.shape[0]
