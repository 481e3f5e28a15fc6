"""Golden parity of the three VAE decoders (cases 02, 04, 05) loaded through `from_pretrained`.

Every parity test runs on CPU and, when available, on CUDA, in float32 with TF32 disabled (the golden
tolerances assume IEEE float32 GEMMs and convolutions). Half precision: `test_decoders_half_precision.py`.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.golden_utils import assert_coords_equal, assert_golden_close
from trellis2.models import from_pretrained
from trellis2.models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
from trellis2.models.sparse_structure_decoder import SparseStructureDecoder
from trellis2.models.sparse_unet_vae_decoder import SparseUnetVaeDecoder
from trellis2.modules.sparse import SparseTensor

pytestmark = pytest.mark.usefixtures("exact_float32_matmul")


@pytest.fixture(scope="module")
def io02(golden_dir):
    return load_file(golden_dir / "case02_ss_decoder" / "case02_io.safetensors")


@pytest.fixture(scope="module")
def ss_decoder(golden_dir, device):
    return from_pretrained(golden_dir / "case02_ss_decoder" / "ss_dec", device=device)


@pytest.fixture(scope="module")
def shape_decoder(golden_dir, device):
    return from_pretrained(golden_dir / "case04_shape_decoder" / "shape_dec", device=device)


@pytest.fixture(scope="module")
def tex_decoder(golden_dir, device):
    return from_pretrained(golden_dir / "case05_tex_decoder" / "tex_dec", device=device)


def latent(io: dict[str, torch.Tensor], device: str) -> SparseTensor:
    return SparseTensor(io["z_feats"].to(device), io["z_coords"].to(device))


def golden_subs(io: dict[str, torch.Tensor], device: str = "cpu") -> list[SparseTensor]:
    return [SparseTensor(io[f"sub{i}_logits"].to(device), io[f"sub{i}_coords"].to(device)) for i in range(4)]


@pytest.fixture(scope="module")
def shape_decoded(shape_decoder, io04, device):
    with torch.no_grad():
        return shape_decoder.decode_voxels(latent(io04, device), return_subs=True)


def test_ss_decoder_logits(ss_decoder, io02, device):
    assert isinstance(ss_decoder, SparseStructureDecoder)
    with torch.no_grad():
        logits = ss_decoder(io02["z"].to(device))
    assert logits.dtype == torch.float32 and logits.device.type == device
    assert_golden_close(logits, io02["logits"], name=f"logits ({device})")


def test_shape_decoder_subdivisions(io04, shape_decoded, device):
    _, subs = shape_decoded
    assert len(subs) == 4
    for i, sub in enumerate(subs):
        assert_coords_equal(sub.coords, io04[f"sub{i}_coords"], f"sub{i} coords ({device})")
        assert_golden_close(sub.feats, io04[f"sub{i}_logits"], name=f"sub{i}_logits ({device})")


def test_shape_decoder_raw_output_and_fields(shape_decoder, io04, shape_decoded, device):
    out, _ = shape_decoded
    assert out.device.type == device
    assert_coords_equal(out.coords, io04["out_coords"], f"out_coords ({device})")
    assert_golden_close(out.feats, io04["out_feats"], name=f"out_feats ({device})")
    fields = shape_decoder.dual_grid_fields(out)
    assert_golden_close(fields.dual_vertices, io04["dual_vertices"], name=f"dual_vertices ({device})")
    assert torch.equal(fields.intersected.cpu(), io04["intersected"]), f"intersected ({device})"
    assert_golden_close(fields.split_weight, io04["quad_lerp"], name=f"quad_lerp ({device})")


@pytest.mark.parametrize("times", [1, 2, 3, 4])
def test_shape_decoder_upsample_coords(shape_decoder, io04, device, times):
    with torch.no_grad():
        coords = shape_decoder.upsample(latent(io04, device), upsample_times=times)
    assert_coords_equal(coords, io04[f"upsample{times}_coords"], f"upsample{times} coords ({device})")


def test_shape_decoder_meshes(shape_decoder, io04, device):
    assert isinstance(shape_decoder, FlexiDualGridVaeDecoder) and shape_decoder.resolution == 64
    with torch.no_grad():
        meshes, subs = shape_decoder(latent(io04, device), return_subs=True)
    assert len(meshes) == 2 and len(subs) == 4
    for b, mesh in enumerate(meshes):
        name = f"mesh{b} ({device})"
        assert_golden_close(
            mesh.vertices, io04[f"mesh{b}_vertices"], atol=1e-5, rtol=0, name=f"{name} vertices"
        )
        assert mesh.faces.dtype == torch.int32
        assert torch.equal(mesh.faces.cpu(), io04[f"mesh{b}_faces"]), f"{name} faces differ"


def test_tex_decoder_with_guide_subs(tex_decoder, io05, io04, device):
    assert isinstance(tex_decoder, SparseUnetVaeDecoder) and not tex_decoder.pred_subdiv
    with torch.no_grad():
        out = tex_decoder(latent(io05, device), guide_subs=golden_subs(io04, device))
    assert_coords_equal(out.coords, io05["out_coords"], f"out_coords ({device})")
    assert_golden_close(out.feats, io05["out_feats"], name=f"out_feats ({device})")
    assert_golden_close(out.feats * 0.5 + 0.5, io05["out_pbr"], name=f"out_pbr ({device})")


def test_tex_decoder_follows_our_shape_decoder(tex_decoder, io05, shape_decoded, device):
    shape_out, subs = shape_decoded
    with torch.no_grad():
        out = tex_decoder(latent(io05, device), guide_subs=subs)
    assert torch.equal(out.coords, shape_out.coords)
    assert_golden_close(out.feats, io05["out_feats"], name=f"out_feats ({device})")


def test_decoder_argument_errors(shape_decoder, tex_decoder, io04, io05, device):
    x = latent(io05, device)
    subs = golden_subs(io04, device)
    with pytest.raises(ValueError, match="guide_subs"):
        tex_decoder(x)
    with pytest.raises(ValueError, match="return_subs"):
        tex_decoder(x, guide_subs=subs, return_subs=True)
    with pytest.raises(ValueError, match="pred_subdiv=False"):
        shape_decoder(x, guide_subs=subs)
    wrong = list(subs)
    wrong[1] = SparseTensor(wrong[1].feats.flip(0), wrong[1].coords.flip(0))
    with pytest.raises(ValueError, match="does not match the decoder's voxels"):
        tex_decoder(x, guide_subs=wrong)
    with pytest.raises(ValueError, match="8 channels"):
        tex_decoder(SparseTensor(x.feats[:, :5], x.coords), guide_subs=subs)
    with pytest.raises(ValueError, match="upsample_times"):
        shape_decoder.upsample(x, upsample_times=7)


def test_chunked_evaluation_matches_golden(shape_decoder, io04, device, monkeypatch):
    """Tiny chunks exercise the memory-bounded paths (row chunks, conv chunks split into children)."""
    from trellis2.models import sparse_unet_vae_decoder
    from trellis2.modules.sparse import conv

    monkeypatch.setattr(sparse_unet_vae_decoder, "ROW_CHUNK", 301)
    monkeypatch.setattr(conv, "GATHER_BUDGET_BYTES", 27 * 64 * 4 * 40)
    monkeypatch.setattr(conv, "LOOKUP_CHUNK_KEYS", 27 * 101)
    monkeypatch.setattr(conv, "NEIGHBOR_MAP_MAX_BYTES", 27 * 4 * 300)  # finer levels: per-chunk lookups
    # Gradients enabled but nothing requires grad (frozen weights): the in-place chunked path runs.
    assert torch.is_grad_enabled() and not any(p.requires_grad for p in shape_decoder.parameters())
    out, subs = shape_decoder.decode_voxels(latent(io04, device), return_subs=True)
    assert not out.feats.requires_grad
    assert_coords_equal(out.coords, io04["out_coords"], f"out_coords ({device})")
    assert_golden_close(out.feats, io04["out_feats"], name=f"out_feats ({device})")
    assert_golden_close(subs[3].feats, io04["sub3_logits"], name=f"sub3_logits ({device})")


def test_autograd_path_matches_golden(golden_dir, io04, io05, device, monkeypatch):
    """When autograd records, the chunked layers build their results out of place and stay differentiable."""
    from trellis2.models import sparse_unet_vae_decoder

    monkeypatch.setattr(sparse_unet_vae_decoder, "ROW_CHUNK", 301)
    model = from_pretrained(golden_dir / "case05_tex_decoder" / "tex_dec", device=device)
    z = io05["z_feats"].to(device, copy=True).requires_grad_(True)
    out = model(SparseTensor(z, io05["z_coords"].to(device)), guide_subs=golden_subs(io04, device))
    assert_golden_close(out.feats.detach(), io05["out_feats"], name=f"out_feats ({device})")
    out.feats.square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_no_surviving_children_gives_empty_meshes(golden_dir, io04, device):
    model = from_pretrained(golden_dir / "case04_shape_decoder" / "shape_dec", device=device)
    with torch.no_grad():
        model.blocks[1][1].to_subdiv.bias.fill_(-1e4)  # every level-1 subdivision logit < 0
        meshes, subs = model(latent(io04, device), return_subs=True)
    assert [s.feats.shape[0] for s in subs] == [15, 65, 0, 0]
    assert len(meshes) == 2
    assert all(m.vertices.shape == (0, 3) and m.faces.shape == (0, 3) for m in meshes)
