"""Golden parity of the three VAE decoders (cases 02, 04, 05) loaded through `from_pretrained`."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import assert_golden_close
from trellis2.models import from_pretrained
from trellis2.models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
from trellis2.models.sparse_structure_decoder import SparseStructureDecoder
from trellis2.models.sparse_unet_vae_decoder import SparseUnetVaeDecoder
from trellis2.modules.sparse import SparseTensor


@pytest.fixture(scope="module")
def case02(golden_dir):
    return from_pretrained(golden_dir / "case02_ss_decoder" / "ss_dec"), load_file(
        golden_dir / "case02_ss_decoder" / "case02_io.safetensors"
    )


@pytest.fixture(scope="module")
def case04(golden_dir):
    return from_pretrained(golden_dir / "case04_shape_decoder" / "shape_dec"), load_file(
        golden_dir / "case04_shape_decoder" / "case04_io.safetensors"
    )


@pytest.fixture(scope="module")
def case05(golden_dir):
    return from_pretrained(golden_dir / "case05_tex_decoder" / "tex_dec"), load_file(
        golden_dir / "case05_tex_decoder" / "case05_io.safetensors"
    )


@pytest.fixture(scope="module")
def shape_decoded(case04):
    model, io = case04
    with torch.no_grad():
        return model.decode_voxels(SparseTensor(io["z_feats"], io["z_coords"]), return_subs=True)


def golden_subs(io: dict[str, torch.Tensor]) -> list[SparseTensor]:
    return [SparseTensor(io[f"sub{i}_logits"], io[f"sub{i}_coords"]) for i in range(4)]


def test_ss_decoder_logits(case02):
    model, io = case02
    assert isinstance(model, SparseStructureDecoder)
    with torch.no_grad():
        logits = model(io["z"])
    assert_golden_close(logits, io["logits"], name="logits")


def test_shape_decoder_subdivisions(case04, shape_decoded):
    _, io = case04
    _, subs = shape_decoded
    assert len(subs) == 4
    for i, sub in enumerate(subs):
        assert torch.equal(sub.coords, io[f"sub{i}_coords"]), f"sub{i} coords differ"
        assert_golden_close(sub.feats, io[f"sub{i}_logits"], name=f"sub{i}_logits")


def test_shape_decoder_raw_output_and_fields(case04, shape_decoded):
    model, io = case04
    out, _ = shape_decoded
    assert torch.equal(out.coords, io["out_coords"])
    assert_golden_close(out.feats, io["out_feats"], name="out_feats")
    fields = model.dual_grid_fields(out)
    assert_golden_close(fields.dual_vertices, io["dual_vertices"], name="dual_vertices")
    assert torch.equal(fields.intersected, io["intersected"])
    assert_golden_close(fields.split_weight, io["quad_lerp"], name="quad_lerp")


@pytest.mark.parametrize("times", [1, 2, 3, 4])
def test_shape_decoder_upsample_coords(case04, times):
    model, io = case04
    with torch.no_grad():
        coords = model.upsample(SparseTensor(io["z_feats"], io["z_coords"]), upsample_times=times)
    assert torch.equal(coords, io[f"upsample{times}_coords"])


def test_shape_decoder_meshes(case04):
    model, io = case04
    assert isinstance(model, FlexiDualGridVaeDecoder) and model.resolution == 64
    with torch.no_grad():
        meshes, subs = model(SparseTensor(io["z_feats"], io["z_coords"]), return_subs=True)
    assert len(meshes) == 2 and len(subs) == 4
    for b, mesh in enumerate(meshes):
        assert_golden_close(mesh.vertices, io[f"mesh{b}_vertices"], atol=1e-5, rtol=0, name=f"mesh{b}_vertices")
        assert mesh.faces.dtype == torch.int32
        assert torch.equal(mesh.faces, io[f"mesh{b}_faces"]), f"mesh{b} faces differ"


def test_tex_decoder_with_guide_subs(case05, case04):
    model, io = case05
    _, shape_io = case04
    assert isinstance(model, SparseUnetVaeDecoder) and not model.pred_subdiv
    with torch.no_grad():
        out = model(SparseTensor(io["z_feats"], io["z_coords"]), guide_subs=golden_subs(shape_io))
    assert torch.equal(out.coords, io["out_coords"])
    assert_golden_close(out.feats, io["out_feats"], name="out_feats")
    assert_golden_close(out.feats * 0.5 + 0.5, io["out_pbr"], name="out_pbr")


def test_tex_decoder_follows_our_shape_decoder(case05, shape_decoded):
    model, io = case05
    shape_out, subs = shape_decoded
    with torch.no_grad():
        out = model(SparseTensor(io["z_feats"], io["z_coords"]), guide_subs=subs)
    assert torch.equal(out.coords, shape_out.coords)
    assert_golden_close(out.feats, io["out_feats"], name="out_feats")


def test_decoder_argument_errors(case04, case05):
    shape, shape_io = case04
    tex, io = case05
    x = SparseTensor(io["z_feats"], io["z_coords"])
    with pytest.raises(ValueError, match="guide_subs"):
        tex(x)
    with pytest.raises(ValueError, match="return_subs"):
        tex(x, guide_subs=golden_subs(shape_io), return_subs=True)
    with pytest.raises(ValueError, match="pred_subdiv=False"):
        shape(x, guide_subs=golden_subs(shape_io))
    wrong = golden_subs(shape_io)
    wrong[1] = SparseTensor(wrong[1].feats.flip(0), wrong[1].coords.flip(0))
    with pytest.raises(ValueError, match="does not match the decoder's voxels"):
        tex(x, guide_subs=wrong)
    with pytest.raises(ValueError, match="8 channels"):
        tex(SparseTensor(io["z_feats"][:, :5], io["z_coords"]), guide_subs=golden_subs(shape_io))
    with pytest.raises(ValueError, match="upsample_times"):
        shape.upsample(x, upsample_times=7)


def test_fp16_torso_precision_plan(golden_dir, case05, case04):
    """`use_fp16`: fp16 block weights, fp32 norms and in/out layers; the fp16 run stays close."""
    model, io = case05
    _, shape_io = case04
    half = from_pretrained(golden_dir / "case05_tex_decoder" / "tex_dec", use_fp16=True)
    block = half.blocks[0][0]
    assert block.conv.weight.dtype == torch.float16 and block.mlp[0].weight.dtype == torch.float16
    assert block.norm.weight.dtype == torch.float32
    assert half.from_latent.weight.dtype == torch.float32 and half.output_layer.weight.dtype == torch.float32
    with torch.no_grad():
        out = half(SparseTensor(io["z_feats"], io["z_coords"]), guide_subs=golden_subs(shape_io))
    assert out.feats.dtype == torch.float32 and torch.equal(out.coords, io["out_coords"])
    err = (out.feats - io["out_feats"]).norm() / io["out_feats"].norm()
    assert err < 1e-2, f"fp16 relative error {float(err):.2e}"

    ss_half = from_pretrained(golden_dir / "case02_ss_decoder" / "ss_dec", use_fp16=True)
    assert ss_half.blocks[0].conv1.weight.dtype == torch.float16
    assert ss_half.middle_block[0].conv1.weight.dtype == torch.float16
    assert ss_half.middle_block[0].norm1.weight.dtype == torch.float32
    assert ss_half.input_layer.weight.dtype == torch.float32 and ss_half.out_layer[2].weight.dtype == torch.float32
    z = load_file(golden_dir / "case02_ss_decoder" / "case02_io.safetensors")
    with torch.no_grad():
        logits = ss_half(z["z"])
    assert logits.dtype == torch.float32
    err = (logits - z["logits"]).norm() / z["logits"].norm()
    assert err < 1e-2, f"fp16 relative error {float(err):.2e}"


def test_chunked_evaluation_matches_golden(case04, monkeypatch):
    """Tiny chunks exercise the memory-bounded paths (row chunks, conv chunks split into children)."""
    from trellis2.models import sparse_unet_vae_decoder
    from trellis2.modules.sparse import conv

    model, io = case04
    monkeypatch.setattr(sparse_unet_vae_decoder, "ROW_CHUNK", 301)
    monkeypatch.setattr(conv, "GATHER_BUDGET_BYTES", 27 * 64 * 4 * 40)
    monkeypatch.setattr(conv, "LOOKUP_CHUNK_KEYS", 27 * 101)
    monkeypatch.setattr(conv, "NEIGHBOR_MAP_MAX_BYTES", 27 * 4 * 300)  # finer levels: per-chunk lookups
    # Gradients enabled but nothing requires grad (frozen weights): the in-place chunked path runs.
    assert torch.is_grad_enabled() and not any(p.requires_grad for p in model.parameters())
    out, subs = model.decode_voxels(SparseTensor(io["z_feats"], io["z_coords"]), return_subs=True)
    assert not out.feats.requires_grad
    assert torch.equal(out.coords, io["out_coords"])
    assert_golden_close(out.feats, io["out_feats"], name="out_feats")
    assert_golden_close(subs[3].feats, io["sub3_logits"], name="sub3_logits")


def test_autograd_path_matches_golden(golden_dir, case04, monkeypatch):
    """When autograd records, the chunked layers build their results out of place and stay differentiable."""
    from trellis2.models import sparse_unet_vae_decoder

    monkeypatch.setattr(sparse_unet_vae_decoder, "ROW_CHUNK", 301)
    _, shape_io = case04
    model = from_pretrained(golden_dir / "case05_tex_decoder" / "tex_dec")
    io = load_file(golden_dir / "case05_tex_decoder" / "case05_io.safetensors")
    z = io["z_feats"].clone().requires_grad_(True)
    out = model(SparseTensor(z, io["z_coords"]), guide_subs=golden_subs(shape_io))
    assert_golden_close(out.feats.detach(), io["out_feats"], name="out_feats")
    out.feats.square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_no_surviving_children_gives_empty_meshes(golden_dir):
    model = from_pretrained(golden_dir / "case04_shape_decoder" / "shape_dec")
    io = load_file(golden_dir / "case04_shape_decoder" / "case04_io.safetensors")
    with torch.no_grad():
        model.blocks[1][1].to_subdiv.bias.fill_(-1e4)  # every level-1 subdivision logit < 0
        meshes, subs = model(SparseTensor(io["z_feats"], io["z_coords"]), return_subs=True)
    assert [s.feats.shape[0] for s in subs] == [15, 65, 0, 0]
    assert len(meshes) == 2
    assert all(m.vertices.shape == (0, 3) and m.faces.shape == (0, 3) for m in meshes)
