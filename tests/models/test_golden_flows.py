"""Golden parity of the flow models (cases 01 and 03) in float32, and under bfloat16 within a bf16 bound."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.golden_utils import DEVICES, assert_golden_close, assert_half_precision_close
from trellis2.models import from_pretrained
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.models.structured_latent_flow import SLatFlowModel
from trellis2.modules.sparse import SparseTensor

pytestmark = pytest.mark.usefixtures("exact_float32_matmul")


@pytest.fixture(scope="module")
def case01(golden_dir):
    return golden_dir / "case01_ss_flow", load_file(golden_dir / "case01_ss_flow" / "case01_io.safetensors")


@pytest.fixture(scope="module")
def case03(golden_dir):
    return golden_dir / "case03_slat_flow", load_file(
        golden_dir / "case03_slat_flow" / "case03_io.safetensors"
    )


@pytest.mark.parametrize("device", DEVICES)
def test_ss_flow_matches_golden(case01, device):
    folder, io = case01
    model = from_pretrained(folder / "ss_flow", device=device)
    assert isinstance(model, SparseStructureFlowModel) and not model.training
    with torch.no_grad():
        for s in "ab":
            out = model(io["x"].to(device), io[f"t_{s}"].to(device), io["cond"].to(device))
            assert out.dtype == torch.float32
            assert_golden_close(out, io[f"out_{s}"], name=f"ss flow out_{s} ({device})")


def test_ss_flow_rope_phases_match_golden(case01):
    folder, io = case01
    phases = from_pretrained(folder / "ss_flow").rope_phases
    assert phases.dtype == torch.complex64
    assert_golden_close(phases.real, io["rope_phases_real"], atol=1e-6, rtol=0, name="rope real")
    assert_golden_close(phases.imag, io["rope_phases_imag"], atol=1e-6, rtol=0, name="rope imag")


def _sparse(io, device) -> SparseTensor:
    return SparseTensor(io["x_feats"].to(device), io["coords"].to(device))


@pytest.mark.parametrize("device", DEVICES)
def test_slat_flows_match_golden(case03, device):
    folder, io = case03
    shape = from_pretrained(folder / "shape_flow", device=device)
    tex = from_pretrained(folder / "tex_flow", device=device)
    assert isinstance(shape, SLatFlowModel)
    x, t, cond = _sparse(io, device), io["t"].to(device), io["cond"].to(device)
    assert x.seqlens == [37, 23]  # two samples of different lengths: the packed varlen path
    with torch.no_grad():
        out = shape(x, t, cond)
        assert torch.equal(out.coords, x.coords)
        assert_golden_close(out.feats, io["shape_out_feats"], name=f"shape flow ({device})")
        varlen = shape(x, t, [io["cond_list_0"].to(device), io["cond_list_1"].to(device)])
        assert_golden_close(
            varlen.feats, io["shape_out_varlen_cond_feats"], name=f"shape flow, list cond ({device})"
        )
        concat = x.replace(io["tex_concat_cond_feats"].to(device))
        out = tex(x, t, cond, concat_cond=concat)
        assert_golden_close(out.feats, io["tex_out_feats"], name=f"texture flow ({device})")


def test_slat_flow_equal_length_batch_matches_single_sample(case03):
    """Two copies of sample 0 (equal lengths) run as a dense batch and must equal its golden rows."""
    folder, io = case03
    model = from_pretrained(folder / "shape_flow")
    n0 = int((io["coords"][:, 0] == 0).sum())
    coords0 = io["coords"][:n0]
    coords = torch.cat([coords0, coords0.clone().index_fill_(1, torch.tensor([0]), 1)])
    x = SparseTensor(torch.cat([io["x_feats"][:n0]] * 2), coords)
    t = torch.full((2,), float(io["t"][0]))
    with torch.no_grad():
        out = model(x, t, io["cond"][:1])  # a [1, T, C] cond is shared by the batch
        listed = model(x, float(io["t"][0]), [io["cond"][0], io["cond"][0]])  # list cond, scalar t
    for name, result in (("dense cond", out), ("list cond", listed)):
        assert_golden_close(result.feats[:n0], io["shape_out_feats"][:n0], name=f"sample 0, copy 1, {name}")
        assert_golden_close(result.feats[n0:], io["shape_out_feats"][:n0], name=f"sample 0, copy 2, {name}")


def test_slat_flow_single_sample_matches_its_rows(case03):
    """Sample 1 run alone (batch of one) reproduces its rows of the two-sample golden output."""
    folder, io = case03
    model = from_pretrained(folder / "shape_flow")
    rows = io["coords"][:, 0] == 1
    coords = io["coords"][rows].clone()
    coords[:, 0] = 0
    with torch.no_grad():
        out = model(SparseTensor(io["x_feats"][rows], coords), io["t"][1:], io["cond"][1:])
    assert_golden_close(out.feats, io["shape_out_feats"][rows], name="sample 1 alone")


@pytest.mark.parametrize("device", DEVICES)
def test_flows_under_bfloat16(case01, case03, device):
    folder, io = case01
    model = from_pretrained(folder / "ss_flow", dtype="bfloat16", device=device)
    assert model.blocks[0].self_attn.to_qkv.weight.dtype == torch.bfloat16
    assert model.blocks[0].modulation.dtype == torch.float32  # official mixed-precision rules
    assert model.blocks[0].self_attn.q_rms_norm.gamma.dtype == torch.float32
    assert model.t_embedder.mlp[0].weight.dtype == torch.float32
    with torch.no_grad():
        out = model(io["x"].to(device), io["t_a"].to(device), io["cond"].to(device))
    assert out.dtype == torch.float32
    assert_half_precision_close(out, io["out_a"], f"ss flow bf16 ({device})")

    folder, io = case03
    shape = from_pretrained(folder / "shape_flow", dtype="bfloat16", device=device)
    tex = from_pretrained(folder / "tex_flow", dtype="bfloat16", device=device)
    x, t, cond = _sparse(io, device), io["t"].to(device), io["cond"].to(device)
    with torch.no_grad():
        assert_half_precision_close(
            shape(x, t, cond).feats, io["shape_out_feats"], f"shape flow bf16 ({device})"
        )
        concat = x.replace(io["tex_concat_cond_feats"].to(device))
        assert_half_precision_close(
            tex(x, t, cond, concat_cond=concat).feats, io["tex_out_feats"], f"tex flow bf16 ({device})"
        )


def test_slat_flow_rejects_mismatched_concat_cond(case03):
    folder, io = case03
    tex = from_pretrained(folder / "tex_flow")
    x = _sparse(io, "cpu")
    other = SparseTensor(io["tex_concat_cond_feats"], io["coords"].flip(0))
    with pytest.raises(ValueError, match="same voxels"):
        tex(x, io["t"], io["cond"], concat_cond=other)
    with pytest.raises(ValueError, match="16 input channels"):
        tex(x, io["t"], io["cond"])


def test_ss_flow_rejects_wrong_input_shape(case01):
    folder, io = case01
    model = from_pretrained(folder / "ss_flow")
    with pytest.raises(ValueError, match=r"x must be \[B, 8, 8, 8, 8\]"):
        model(io["x"][:, :4], io["t_a"], io["cond"])
    with pytest.raises(ValueError, match="t must be"):
        model(io["x"], torch.zeros(3), io["cond"])
    with pytest.raises(ValueError, match="cond must be"):
        model(io["x"], io["t_a"], io["cond"][0])
