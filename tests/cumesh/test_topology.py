"""The shared export topology check (`check_topology`) and repair (`clean_topology`): each defect, each operation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

import cumesh as cm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "o_voxel"))
import ov_shapes as shapes  # noqa: E402


def to_torch(mesh: trimesh.Trimesh) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors of a trimesh (local: another folder's conftest may shadow cumesh's in one session)."""
    return torch.tensor(np.asarray(mesh.vertices), dtype=torch.float32), torch.tensor(np.asarray(mesh.faces))


DEFECTS = (
    "degenerate",
    "duplicate",
    "coincident",
    "inconsistent_winding",
    "inward_closed_parts",
    "normal_mismatch",
)


def _only(report: cm.TopologyReport, **expected: int) -> None:
    counts = {k: getattr(report, k) for k in DEFECTS}
    assert counts == {k: expected.get(k, 0) for k in DEFECTS}, counts
    assert report.clean == (not expected)


def test_clean_mesh_has_no_defect(sphere):
    v, f = sphere
    _only(cm.check_topology(v, f, cm.vertex_normals(v, f)))
    cm.check_topology(v, f).raise_if_defective()


def test_each_defect_is_counted(sphere):
    v, f = sphere
    _only(cm.check_topology(v, torch.cat([f, f[:2, [1, 2, 0]], f[2:3, [0, 2, 1]]])), duplicate=3)
    copies = torch.cat([v, v[f[:4].reshape(-1)]])  # the same positions under new indices
    extra = v.shape[0] + torch.arange(12).reshape(4, 3)
    _only(cm.check_topology(copies, torch.cat([f, extra])), coincident=4)
    _only(cm.check_topology(v, torch.cat([f, torch.tensor([[0, 0, 1], [1, 2, 1]])])), degenerate=2)
    mid = torch.cat([v, ((v[f[0, 0]] + v[f[0, 1]]) / 2)[None]])  # a zero-area cap on an edge
    cap = torch.tensor([[f[0, 0], f[0, 1], v.shape[0]]])
    _only(cm.check_topology(mid, torch.cat([f, cap])), degenerate=1)
    flipped = f.clone()
    flipped[5] = f[5, [0, 2, 1]]
    report = cm.check_topology(v, flipped)
    assert (
        report.inconsistent_winding == 3 and report.inward_closed_parts == 0
    )  # not a consistent closed part
    _only(cm.check_topology(v, f[:, [0, 2, 1]]), inward_closed_parts=1)
    normals = cm.vertex_normals(v, f)
    normals[f[7]] = -normals[f[7]]
    assert cm.check_topology(v, f, normals).normal_mismatch >= 1
    with pytest.raises(ValueError, match="duplicate"):
        cm.check_topology(v, torch.cat([f, f[:1]])).raise_if_defective()


def test_seam_split_copies_count_as_one_point(sphere):
    """An unwrapped (seam-split) closed mesh is still one closed outward part with consistent winding."""
    v, f = sphere
    v2, f2, _, _ = cm.uv_unwrap(v, f)
    _only(cm.check_topology(v2, f2))
    _only(cm.check_topology(v2, f2[:, [0, 2, 1]]), inward_closed_parts=1)


def test_clean_topology_repairs_every_defect(sphere):
    v, f = sphere
    bad = f.clone()
    bad[5] = f[5, [0, 2, 1]]  # one flipped face
    bad = torch.cat([bad, f[:3], f[3:5, [0, 2, 1]], torch.tensor([[0, 0, 1]])])  # same/opposite duplicates
    v2, f2 = cm.clean_topology(v, bad)
    _only(cm.check_topology(v2, f2, cm.vertex_normals(v2, f2)))
    # opposite duplicates cancel (a zero-volume fin), same-orientation ones keep one face
    assert f2.shape[0] == f.shape[0] - 2
    v3, f3 = cm.clean_topology(v, f[:, [0, 2, 1]])  # inside-out: turned outward
    assert torch.equal(f3, f)


def test_split_normal_mismatches(sphere):
    v, f = sphere
    normals = cm.vertex_normals(v, f)
    normals[f[7]] = -normals[f[7]]
    faces, new_normals, source = cm.split_normal_mismatches(v, f, normals)
    assert source.shape[0] == new_normals.shape[0] > v.shape[0]
    _only(cm.check_topology(v[source], faces, new_normals))


def _assert_clean(v: torch.Tensor, f: torch.Tensor) -> None:
    report = cm.check_topology(v, f, cm.vertex_normals(v, f))
    assert report.clean, report


SHAPES = {
    "t_junction": lambda: to_torch(shapes.t_junction()),
    "torus": lambda: to_torch(shapes.torus()),
    "wavy_sheet": lambda: to_torch(shapes.wavy_sheet()),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_operation_then_clean_is_clean(shape):
    v, f = SHAPES[shape]()
    steps = {
        "simplify": lambda v, f: cm.simplify(v, f, 1500),
        "repair": cm.repair_non_manifold_edges,
        "fill holes": lambda v, f: cm.fill_holes(v, f, 0.2),
    }
    for name, op in steps.items():
        out = op(v, f)
        if name == "repair":  # vertex splitting alone keeps a clean mesh clean (to_glb relies on it)
            _assert_clean(*out)
        v, f = cm.clean_topology(*out)
        assert f.shape[0] > 100, name
        _assert_clean(v, f)


def test_remesh_then_clean_is_clean():
    mesh = shapes.t_junction()
    v, f = to_torch(mesh)
    r = 48
    v1, f1 = cm.remesh_narrow_band_dc(
        v, f, torch.zeros(3), (r + 3) / r, r, band=1, project_back=0.9, keep_inward_sheets=False
    )
    v1, f1 = cm.clean_topology(v1, f1)
    _assert_clean(v1, f1)
    v2, f2 = cm.clean_topology(*cm.simplify(v1, f1, 2000))
    _assert_clean(v2, f2)


def test_open_and_nested_parts_are_not_inward():
    box = trimesh.creation.box()
    v, f = to_torch(box)
    _only(cm.check_topology(v, f[:-2]))  # open: no volume test
    sphere = trimesh.creation.icosphere(subdivisions=2)
    both = trimesh.util.concatenate([sphere, sphere.copy().apply_translation([3, 0, 0])])
    v, f = to_torch(both)
    assert cm.check_topology(v, f).clean
    f = f.clone()
    n = len(sphere.faces)
    f[n:] = f[n:, [0, 2, 1]]
    _only(cm.check_topology(v, f), inward_closed_parts=1)
    assert np.isclose(cm.check_topology(*cm.clean_topology(v, f)).faces, 2 * n)
