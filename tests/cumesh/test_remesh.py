import pytest
import torch
import trimesh

import cumesh
from tests.cumesh.conftest import to_torch, to_trimesh


def test_remesh_closed_sphere_gives_two_oriented_offset_sheets():
    v, f = to_torch(trimesh.creation.icosphere(subdivisions=3, radius=0.3))
    res = 32
    scale = (res + 3) / res
    eps = scale / res
    out_v, out_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], scale, res, band=1)
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and mesh.is_winding_consistent
    bodies = sorted(mesh.split(only_watertight=False), key=lambda b: -abs(b.volume))
    assert len(bodies) == 2
    outer, inner = bodies
    r_out = torch.tensor(outer.vertices).norm(dim=1)
    r_in = torch.tensor(inner.vertices).norm(dim=1)
    cell = scale / res
    assert abs(float(r_out.mean()) - (0.3 + eps)) < 0.25 * cell
    assert abs(float(r_in.mean()) - (0.3 - eps)) < 0.25 * cell
    assert outer.volume > 0 and inner.volume < 0  # normals point away from the input surface


def test_remesh_open_sheet_gives_closed_shell_and_projection_lands_on_input():
    v = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out_v, out_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, 16, band=1)
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0
    proj_v, proj_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, 16, band=1, project_back=1.0)
    assert torch.equal(proj_f, out_f)
    assert float(proj_v[:, 2].abs().max()) < 1e-5


def test_remesh_rejects_bad_parameters(sphere):
    v, f = sphere
    with pytest.raises(ValueError, match="project_back"):
        cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, 16, project_back=2.0)
    with pytest.raises(ValueError, match="resolution"):
        cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, 1)


def test_remesh_accepts_resolutions_that_do_not_halve_evenly():
    v, f = to_torch(trimesh.creation.icosphere(subdivisions=2, radius=0.3))
    res = 45  # 45 -> 23 coarse cells of twice the size
    out_v, out_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, res, band=1)
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 2
    r = out_v.norm(dim=1)
    assert float(r.max()) < 0.3 + 2 / res and float(r.min()) > 0.3 - 2 / res


def test_remeshed_sphere_stays_in_a_band_around_the_input():
    v, f = to_torch(trimesh.creation.icosphere(subdivisions=4, radius=0.35))
    res = 40
    scale = (res + 3) / res
    cell = scale / res
    out_v, out_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], scale, res, band=1)
    dist, _, _ = cumesh.MeshBVH(v, f).closest_point(out_v)
    assert out_f.shape[0] > 1000
    assert float((dist - cell).abs().max()) < 0.5 * cell  # every vertex near the eps-offset surface
    assert float(dist.min()) > 0.4 * cell


def _brute_force_distances(v, f, points):
    from cumesh.bvh import closest_point_on_triangles

    tris = v[f]
    d, _ = closest_point_on_triangles(
        points.repeat_interleave(len(f), 0), *tris.repeat(len(points), 1, 1).unbind(1)
    )
    return d.reshape(len(points), len(f)).min(1).values.sqrt()


def test_band_distances_are_exact_and_chunking_does_not_change_them(monkeypatch):
    import cumesh.band_distance as bd
    from cumesh.bvh import closest_point_on_triangles

    g = torch.Generator().manual_seed(0)
    v = torch.rand(40, 3, generator=g) * 0.8 - 0.4
    f = torch.randint(0, 40, (30, 3), generator=g)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    n, cell, radius = 12, 1.0 / 12, 0.15
    origin = torch.full((3,), -0.5)
    keys, dist, face = bd.near_grid_distances(v, f, origin, cell, n, radius)
    grid = torch.cartesian_prod(*[torch.arange(n + 1)] * 3)
    truth = _brute_force_distances(v, f, origin + grid * cell)
    inside = truth < radius
    assert torch.equal(keys, bd.grid_keys(grid[inside], n))
    assert torch.allclose(dist, truth[inside], atol=1e-6)
    face_d, _ = closest_point_on_triangles(origin + grid[inside] * cell, *v[f[face]].unbind(1))
    assert torch.allclose(face_d.sqrt(), dist, atol=1e-6)  # the returned face is a closest one
    monkeypatch.setattr(bd, "_CPU_PAIR_BUDGET", 7)  # boxes split into slabs, many chunks
    monkeypatch.setattr(bd, "_FACE_BLOCK", 5)
    keys2, dist2, face2 = bd.near_grid_distances(v, f, origin, cell, n, radius)
    assert torch.equal(keys2, keys) and torch.equal(dist2, dist) and torch.equal(face2, face)
    subset = keys[::3]
    keys3, dist3, _ = bd.near_grid_distances(v, f, origin, cell, n, radius, only=subset)
    assert torch.equal(keys3, subset) and torch.allclose(dist3, dist[::3])


@pytest.mark.parametrize("project_back", [0.0, 0.9])
def test_remesh_of_thin_crossing_sheets_is_finite_and_hugs_the_input(project_back):
    """A T-junction of thin sheets (cells with corners far outside the band): finite, watertight, close."""
    a = trimesh.creation.box(extents=[0.6, 0.6, 0.004])
    b = trimesh.creation.box(extents=[0.004, 0.6, 0.3])
    b.apply_translation([0.0, 0.0, 0.15])
    v, f = to_torch(trimesh.util.concatenate([a, b]))
    res = 48
    scale = (res + 3) / res
    cell = scale / res
    out_v, out_f = cumesh.remesh_narrow_band_dc(
        v, f, [0, 0, 0], scale, res, band=1, project_back=project_back
    )
    assert out_f.shape[0] > 1000
    assert bool(torch.isfinite(out_v).all())
    assert int(out_f.max()) < out_v.shape[0]
    dist, _, _ = cumesh.MeshBVH(v, f).closest_point(out_v)
    assert float(dist.max()) < (1 - project_back) * 1.5 * cell + 1e-4
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight


def test_remesh_can_drop_the_inward_sheet_of_closed_surfaces():
    v, f = to_torch(trimesh.creation.icosphere(subdivisions=3, radius=0.3))
    res = 32
    scale = (res + 3) / res
    cell = scale / res
    both_v, both_f = cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], scale, res, band=1, project_back=0.5)
    out_v, out_f = cumesh.remesh_narrow_band_dc(
        v, f, [0, 0, 0], scale, res, band=1, project_back=0.5, keep_inward_sheets=False
    )
    mesh = to_trimesh(out_v, out_f)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1 and mesh.volume > 0
    assert float(out_v.norm(dim=1).min()) > 0.3  # only the outer sheet, half-way projected
    assert abs(float(out_v.norm(dim=1).mean()) - (0.3 + 0.5 * cell)) < 0.25 * cell
    assert 0.5 * both_f.shape[0] < out_f.shape[0] < 0.7 * both_f.shape[0]  # the outer sheet is the larger
    # an open sheet's shell has positive volume: nothing is dropped
    sheet_v = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]])
    sheet_f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    a = cumesh.remesh_narrow_band_dc(sheet_v, sheet_f, [0, 0, 0], 1.0, 16, band=1)
    b = cumesh.remesh_narrow_band_dc(sheet_v, sheet_f, [0, 0, 0], 1.0, 16, band=1, keep_inward_sheets=False)
    assert torch.equal(a[1], b[1])
