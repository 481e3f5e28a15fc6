import pytest
import torch
import trimesh

import cumesh
from tests.cumesh.conftest import to_torch, to_trimesh

try:
    import fast_simplification  # noqa: F401

    METHODS = ["parallel", "fast_simplification"]
except ImportError:
    METHODS = ["parallel"]


def _hausdorff(va, fa, vb, fb):
    d_ab, _, _ = cumesh.MeshBVH(vb, fb).closest_point(va)
    d_ba, _, _ = cumesh.MeshBVH(va, fa).closest_point(vb)
    return max(float(d_ab.max()), float(d_ba.max()))


@pytest.mark.parametrize("method", METHODS)
def test_simplify_sphere_to_target_with_small_error(method):
    v, f = to_torch(trimesh.creation.icosphere(subdivisions=4, radius=0.5))  # 5120 faces
    calls = []
    out_v, out_f = cumesh.simplify(
        v, f, 600, progress=lambda done, total: calls.append((done, total)), method=method
    )
    assert 540 <= out_f.shape[0] <= 600
    assert calls and calls[-1][1] == f.shape[0] - 600
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and mesh.euler_number == 2
    # a 600-face sphere of radius 0.5 has chord sag ~ 0.004; allow a few times that
    assert _hausdorff(v, f, out_v, out_f) < 0.02


def test_simplify_keeps_the_border_of_an_open_sheet():
    grid = trimesh.creation.box(extents=[1, 1, 1]).subdivide().subdivide().subdivide()
    v, f = to_torch(grid)
    top = (v[f][:, :, 2] > 0.49).all(1)  # the top face only: an open 1x1 square
    v, f = cumesh.remove_unreferenced_vertices(v, f[top])
    out_v, out_f = cumesh.simplify(v, f, f.shape[0] // 8, method="parallel")
    assert out_f.shape[0] <= f.shape[0] // 8
    edges = torch.tensor(to_trimesh(out_v, out_f).edges_sorted)
    uniq, counts = torch.unique(edges, dim=0, return_counts=True)
    border = torch.unique(uniq[counts == 1])
    on_border = (out_v[border, :2].abs() - 0.5).abs().min(1).values
    assert float(on_border.max()) < 1e-4
    assert abs(float(cumesh.face_areas(out_v, out_f).sum()) - 1.0) < 1e-3


def test_simplify_within_budget_returns_mesh_and_rejects_bad_target(sphere):
    v, f = sphere
    out_v, out_f = cumesh.simplify(v, f, f.shape[0] + 10)
    assert torch.equal(out_v[out_f], v[f])
    with pytest.raises(ValueError, match="target_num_faces"):
        cumesh.simplify(v, f, 0)
    with pytest.raises(ValueError, match="method"):
        cumesh.simplify(v, f, 10, method="magic")
