"""UV-space rasteriser: coverage, shared-edge rule, barycentrics, chunking."""

from __future__ import annotations

import torch

from o_voxel.rasterize import rasterize_uv


def _texel_uv(h: int, w: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([(cols + 0.5) / w, (rows + 0.5) / h], -1)


def test_square_is_covered_exactly_once_and_barycentrics_reproduce_uv():
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    for h, w in ((16, 16), (32, 8)):  # 16x16: the diagonal passes through texel centres
        face_id, bary = rasterize_uv(uv, faces, h, w)
        assert bool((face_id >= 0).all())
        uv_back = (bary[..., None] * uv[faces[face_id]]).sum(-2)
        assert torch.allclose(uv_back, _texel_uv(h, w), atol=1e-6)
        assert torch.allclose(bary.sum(-1), torch.ones(h, w))
        assert bool((bary >= -1e-6).all())


def test_row_zero_is_v_zero_and_uncovered_texels():
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.4]])  # bottom strip in v
    face_id, bary = rasterize_uv(uv, torch.tensor([[0, 1, 2]]), 10, 10)
    assert bool((face_id[0, :5] == 0).all())  # row 0 is v = 0.05
    assert bool((face_id[9] == -1).all())
    assert bool((bary[face_id < 0] == 0).all())


def test_chunked_equals_unchunked_and_degenerate_faces_cover_nothing():
    torch.manual_seed(1)
    n = 300
    centres = torch.rand(n, 1, 2) * 0.9 + 0.05
    uv = (centres + (torch.rand(n, 3, 2) - 0.5) * 0.08).reshape(-1, 2)
    faces = torch.arange(3 * n).reshape(n, 3)
    faces = torch.cat([faces, torch.tensor([[0, 0, 1]])])  # repeated index -> zero area
    a = rasterize_uv(uv, faces, 64, 64)
    b = rasterize_uv(uv, faces, 64, 64, budget=50)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])
    assert not bool((a[0] == n).any())
    assert bool((a[0] >= 0).any())
