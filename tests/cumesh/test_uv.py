import pytest
import torch

import cumesh


def _uv_signed_area(uvs, faces):
    t0, t1, t2 = uvs[faces[:, 0]].double(), uvs[faces[:, 1]].double(), uvs[faces[:, 2]].double()
    e1, e2 = t1 - t0, t2 - t0
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def _coverage(uvs, faces, size=128):
    """How many UV triangles strictly contain each texel centre (charts must not overlap)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    p = (torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).double() + 0.5) / size
    count = torch.zeros(size * size, dtype=torch.int64)
    for chunk in faces.split(256):
        t = uvs[chunk].double()  # [n,3,2]
        a, b, c = t[:, None, 0], t[:, None, 1], t[:, None, 2]

        def edge(p0, p1):
            return (p1[..., 0] - p0[..., 0]) * (p[None, :, 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (
                p[None, :, 0] - p0[..., 0]
            )

        w0, w1, w2 = edge(b, c), edge(c, a), edge(a, b)
        inside = ((w0 > 0) & (w1 > 0) & (w2 > 0)) | ((w0 < 0) & (w1 < 0) & (w2 < 0))
        count += inside.sum(0)
    return count


def test_uv_unwrap_produces_valid_non_overlapping_atlas(torus):
    v, f = torus
    out_v, out_f, uvs, vmap = cumesh.uv_unwrap(v, f, compute_charts_kwargs={"max_cluster_faces": 256})
    assert out_f.shape[0] == f.shape[0]  # nothing degenerate in a torus
    assert torch.equal(out_v, v[vmap])
    assert float(uvs.min()) >= 0 and float(uvs.max()) <= 1
    assert (_uv_signed_area(uvs, out_f).abs() > 0).all()
    # every input face is present once, with the same 3D triangle
    key_in = torch.sort(v[f].reshape(f.shape[0], -1), dim=0).values
    key_out = torch.sort(out_v[out_f].reshape(out_f.shape[0], -1), dim=0).values
    assert torch.equal(key_in, key_out)
    assert int(_coverage(uvs, out_f).max()) <= 1
    assert out_v.shape[0] > v.shape[0]  # seams split vertices


def test_uv_unwrap_drops_degenerate_faces_and_maps_to_input(sphere):
    v, f = sphere
    f2 = torch.cat([f, torch.tensor([[0, 0, 1]])])
    out_v, out_f, uvs, vmap = cumesh.uv_unwrap(
        v,
        f2,
        compute_charts_kwargs={"use_input_mesh_uvs": False},
        pack_charts_kwargs={"padding": 1, "block_align": True},
    )
    assert out_f.shape[0] == f.shape[0]
    assert int(vmap.max()) < v.shape[0] and torch.equal(out_v, v[vmap])


def test_uv_unwrap_rejects_unknown_options(sphere):
    v, f = sphere
    with pytest.raises(ValueError, match="unknown chart option"):
        cumesh.uv_unwrap(v, f, compute_charts_kwargs={"max_chrat_area": 1.0})
    with pytest.raises(ValueError, match="unknown pack option"):
        cumesh.uv_unwrap(v, f, pack_charts_kwargs={"pading": 1})


def test_remove_uv_degenerate_faces_filters_black_bar_faces():
    tri = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    v = torch.cat([tri, tri + 1, tri + 2, tri + 3])
    v[7] = v[6]  # face 2: two different vertices at one position (zero-length edge)
    f = torch.arange(12).reshape(4, 3)
    uv_tri = torch.tensor([[0.0, 0], [0.1, 0], [0, 0.1]])
    uvs = torch.cat([uv_tri, torch.zeros(3, 2), uv_tri + 0.2, uv_tri + 0.5])  # face 1: UVs collapsed to (0,0)
    out_v, out_f, out_uv, kept = cumesh.remove_uv_degenerate_faces(v, f, uvs)
    assert out_f.shape[0] == 2
    assert torch.equal(kept, torch.tensor([0, 1, 2, 9, 10, 11]))
    assert torch.equal(out_v, v[kept]) and torch.equal(out_uv, uvs[kept])
    assert torch.equal(out_v[out_f], v[f[[0, 3]]])
    *_, mapped = cumesh.remove_uv_degenerate_faces(v, f, uvs, vmap=torch.arange(100, 112))
    assert torch.equal(mapped, kept + 100)
    with pytest.raises(ValueError, match="uvs must have shape"):
        cumesh.remove_uv_degenerate_faces(v, f, uvs[:5])
