import math

import pytest
import torch

import cumesh

OPS = [
    lambda v, f: cumesh.remove_unreferenced_vertices(v, f),
    lambda v, f: cumesh.merge_duplicate_vertices(v, f),
    lambda v, f: cumesh.remove_duplicate_faces(v, f),
    lambda v, f: cumesh.remove_degenerate_faces(v, f),
    lambda v, f: cumesh.repair_non_manifold_edges(v, f),
    lambda v, f: cumesh.remove_small_connected_components(v, f, 1e-5),
    lambda v, f: cumesh.unify_face_orientations(v, f),
    lambda v, f: cumesh.fill_holes(v, f),
    lambda v, f: cumesh.simplify(v, f, 1),
    lambda v, f: cumesh.vertex_normals(v, f),
    lambda v, f: cumesh.MeshBVH(v, f),
    lambda v, f: cumesh.uv_unwrap(v, f),
    lambda v, f: cumesh.remesh_narrow_band_dc(v, f, [0, 0, 0], 1.0, 8),
]

TRI_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
TRI_F = torch.tensor([[0, 1, 2]])


@pytest.mark.parametrize("op", OPS)
def test_empty_mesh_is_rejected(op):
    with pytest.raises(ValueError, match="no faces"):
        op(TRI_V, torch.zeros(0, 3, dtype=torch.int64))


@pytest.mark.parametrize("op", OPS)
def test_nan_vertices_are_rejected(op):
    v = TRI_V.clone()
    v[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        op(v, TRI_F)


@pytest.mark.parametrize("op", OPS)
def test_out_of_range_index_is_rejected(op):
    with pytest.raises(ValueError, match=r"face indices must lie in \[0, 3\)"):
        op(TRI_V, torch.tensor([[0, 1, 3]]))


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"\[V, 3\]"):
        cumesh.face_areas(TRI_V[:, :2], TRI_F)
    with pytest.raises(ValueError, match="triangles"):
        cumesh.face_areas(TRI_V, torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match="int32 or int64"):
        cumesh.face_areas(TRI_V, TRI_F.float())
    with pytest.raises(ValueError, match="NaN"):
        cumesh.MeshBVH(TRI_V, TRI_F).closest_point(torch.tensor([[math.nan, 0.0, 0.0]]))


def test_int32_faces_accepted_and_inputs_untouched(sphere):
    v, f = sphere
    v0, f32 = v.clone(), f.int()
    out_v, out_f = cumesh.unify_face_orientations(v, f32)
    assert out_f.dtype == torch.int64
    assert torch.equal(v, v0) and torch.equal(f32.long(), f)
