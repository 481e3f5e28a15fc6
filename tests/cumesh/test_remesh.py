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
