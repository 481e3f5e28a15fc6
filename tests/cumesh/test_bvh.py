import math

import torch

import cumesh
from cumesh.bvh import closest_point_on_triangles


def _brute(points, v, f):
    tris = v[f]
    best_d, best_f = [], []
    for p in points.split(64):
        P = p.repeat_interleave(f.shape[0], 0)
        T = tris.repeat(p.shape[0], 1, 1)
        d, _ = closest_point_on_triangles(P, T[:, 0], T[:, 1], T[:, 2])
        d = d.view(p.shape[0], -1)
        best_d.append(d.min(1).values.sqrt())
        best_f.append(d.argmin(1))
    return torch.cat(best_d), torch.cat(best_f)


def _check(v, f, points, bvh=None):
    bvh = bvh or cumesh.MeshBVH(v, f)
    d, fid, uvw = bvh.closest_point(points)
    ref_d, _ = _brute(points, v, f)
    assert torch.allclose(d, ref_d, atol=1e-6), float((d - ref_d).abs().max())
    assert torch.isfinite(uvw).all() and (uvw >= -1e-6).all()
    assert torch.allclose(uvw.sum(1), torch.ones(points.shape[0]), atol=1e-5)
    closest = (uvw[:, :, None] * v[f[fid]]).sum(1)
    assert torch.allclose((closest - points).norm(dim=1), d, atol=1e-5)
    return d, fid, uvw


def test_closest_point_matches_brute_force_near_and_far(torus):
    v, f = torus
    g = torch.Generator().manual_seed(0)
    on_surface = v[f[:, 0]][:200] * 0.4 + v[f[:, 1]][:200] * 0.3 + v[f[:, 2]][:200] * 0.3
    near = on_surface + 0.01 * torch.randn(200, 3, generator=g)
    far = torch.randn(60, 3, generator=g)
    _check(v, f, torch.cat([near, far]))


def test_points_on_vertices_get_vertex_barycentrics(sphere):
    v, f = sphere
    d, fid, uvw = cumesh.MeshBVH(v, f).closest_point(v[:50])
    assert float(d.max()) < 1e-6
    assert torch.allclose(uvw.max(1).values, torch.ones(50), atol=1e-5)


def test_degenerate_and_oversized_triangles(torus):
    v, f = torus
    nv = v.shape[0]
    extra_v = torch.tensor(
        [[-2.0, -2, 0.5], [2, -2, 0.5], [0, 2, 0.5], [0, 0, 0.2], [0.1, 0, 0.2], [0.2, 0, 0.2]]
    )
    v2 = torch.cat([v, extra_v])
    # one huge triangle above the torus and a collinear (zero-area) triangle inside the hole
    f2 = torch.cat([f, torch.tensor([[nv, nv + 1, nv + 2], [nv + 3, nv + 4, nv + 5]])])
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(200, 3, generator=g) - 0.5
    _, fid, _ = _check(v2, f2, pts)
    assert (fid == f.shape[0]).any() and (fid == f.shape[0] + 1).any()


def test_max_distance_bounds_the_search(torus):
    v, f = torus
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(200, 3, generator=g) - 0.5
    ref_d, _ = _brute(pts, v, f)
    d, fid, uvw = cumesh.MeshBVH(v, f).closest_point(pts, max_distance=0.05)
    inside = ref_d <= 0.05
    assert torch.allclose(d[inside], ref_d[inside], atol=1e-6)
    assert torch.isinf(d[~inside]).all() and (fid[~inside] == -1).all()
    assert not math.isinf(float(d[inside].max()))


def test_tiny_mesh_uses_exhaustive_search():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = torch.tensor([[0, 1, 2]])
    d, fid, uvw = cumesh.MeshBVH(v, f).closest_point(torch.tensor([[0.25, 0.25, 1.0], [2.0, 0, 0]]))
    assert torch.allclose(d, torch.tensor([1.0, 1.0]))
    assert torch.allclose(uvw[0], torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(uvw[1], torch.tensor([0.0, 1.0, 0.0]))


def test_within_distance_matches_exact_distances(torus):
    v, f = torus
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(300, 3, generator=g) - 0.5
    ref_d, _ = _brute(pts, v, f)
    hit = cumesh.MeshBVH(v, f).within_distance(pts, 0.05)
    assert torch.equal(hit, ref_d < 0.05)
