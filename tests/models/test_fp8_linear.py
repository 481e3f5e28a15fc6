"""The opt-in FP8 matrix products (`trellis2.modules.fp8_linear`): the quantization, the product's
arithmetic on the CPU, the layer swap and its undoing, and what the fast path does with `fp8` where
FP8 cannot run. On an FP8 GPU the benchmarks measure its speed and drift."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.models.interpreted import run_interpreted
from tests.random_flows import FLOW, randomize
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.modules import fp8_linear
from trellis2.samplers import FastPathOptions, FlowRunner

E4M3_STEP = 2.0**-3  # relative spacing of e4m3's normal values (3 mantissa bits): errors up to half


def test_rows_quantize_to_e4m3_with_their_largest_value_at_448():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 64, generator=g) * torch.logspace(-3, 3, 6)[:, None]
    x[5] = 0
    q, scale = fp8_linear.quantize_rows(x)
    assert q.dtype == fp8_linear.FP8_DTYPE and scale.shape == (6, 1)
    assert torch.equal(q[:5].float().abs().amax(dim=1), torch.full((5,), 448.0))
    assert torch.equal(q[5].float(), torch.zeros(64)) and bool(torch.isfinite(scale).all())
    back = q.float() * scale
    big = x.abs() >= scale * 2.0**-6  # e4m3's normal range; below it the steps are absolute
    assert bool(((back - x).abs() <= x.abs() * E4M3_STEP / 2 + 1e-12)[big].all())


def test_an_fp8_layer_computes_the_dequantized_product_and_stays_near_the_exact_one():
    g = torch.Generator().manual_seed(1)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 7, 64, generator=g)
    layer = fp8_linear.Fp8Linear(linear, fp8_linear.quantize_rows)
    with torch.no_grad():
        out = layer(x)
    q, scale = fp8_linear.quantize_rows(x.reshape(-1, 64))
    w, w_scale = fp8_linear.quantize_rows(linear.weight.detach())
    want = (q.float() * scale) @ (w.float() * w_scale).t() + linear.bias
    assert out.shape == (3, 7, 48)
    assert torch.allclose(out.reshape(-1, 48), want, atol=1e-5)
    with torch.no_grad():
        exact = linear(x)
    error = float((out - exact).norm() / exact.norm())
    assert 1e-3 < error < 0.05  # e4m3 keeps 3 mantissa bits: a few % per product
    with torch.no_grad():
        apart = fp8_linear.Fp8Linear(linear, fp8_linear.quantize_rows, bias_in_product=False)(x)
    assert torch.equal(apart, out)


def flow() -> SparseStructureFlowModel:
    return randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **FLOW), 0)


def test_the_swap_takes_every_block_product_and_gives_the_model_its_layers_back():
    model = flow()
    before = {name: module for name, module in model.named_modules()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    layers = fp8_linear.Fp8Layers(model, fp8_linear.quantize_rows)
    assert len(layers.swapped) == len(model.blocks) * len(fp8_linear.BLOCK_LAYERS)
    block = model.blocks[0]
    assert isinstance(block.self_attn.to_qkv, fp8_linear.Fp8Linear)
    assert isinstance(block.mlp.mlp[2], fp8_linear.Fp8Linear)
    assert isinstance(block.cross_attn.to_kv, nn.Linear)  # computed once per run: not swapped
    layers.restore()
    assert {name: module for name, module in model.named_modules()} == before
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_runner_asked_for_fp8_on_the_cpu_says_why_not_and_keeps_the_bits():
    model = flow()
    g = torch.Generator().manual_seed(4)
    x, cond = torch.randn(1, 8, 4, 4, 4, generator=g), torch.randn(1, 10, 32, generator=g)
    neg = torch.zeros_like(cond)
    t = torch.tensor([500.0])
    with torch.no_grad():
        plain = FlowRunner(model, x, cond, neg, FastPathOptions()).positive(x, t)
        asked = FlowRunner(model, x, cond, neg, FastPathOptions(fp8=True))
        assert asked.report.fp8 == "not used: needs CUDA"
        assert torch.equal(asked.positive(x, t), plain)
        asked.close()
    assert FastPathOptions().fp8 is False  # opt-in: it changes the outputs


@pytest.mark.skipif(
    not fp8_linear.fused_available(), reason="Triton is not installed (a dev install has it on Linux)"
)
def test_the_fused_quantizer_under_the_interpreter_gives_the_definitions_bits():
    run_interpreted("tests.models.fp8_checks", "fp8 checks passed")
