"""The flows' fast-path pieces give the reference results (float32, CPU, tight tolerance):
prepared cross-attention context (key/value cache), the zero-token constant, batched guidance pairs,
native LayerNorm, real-valued RoPE, and the SDPA backend helpers."""

from __future__ import annotations

import pytest
import torch

from tests.random_flows import FLOW, randomize
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.models.structured_latent_flow import SLatFlowModel
from trellis2.modules.rope import RotaryPositionEmbedder, apply_rotary, rotary_cos_sin
from trellis2.modules.sdpa import AttentionShape, probe_backends, sdpa_backend
from trellis2.modules.sparse import SparseTensor
from trellis2.modules.transformer import FastPathUnsupported, PreparedCondition

TIGHT = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def dense_model() -> SparseStructureFlowModel:
    return randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **FLOW), 0)


@pytest.fixture(scope="module")
def shape_model() -> SLatFlowModel:
    return randomize(SLatFlowModel(resolution=8, in_channels=8, out_channels=8, **FLOW), 1)


@pytest.fixture(scope="module")
def tex_model() -> SLatFlowModel:
    return randomize(SLatFlowModel(resolution=8, in_channels=16, out_channels=8, **FLOW), 2)


def sparse_latent(samples: int, tokens: int, channels: int, seed: int) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    coords = []
    for b in range(samples):
        xyz = torch.randperm(512, generator=g)[:tokens].sort().values
        xyz = torch.stack([xyz // 64, xyz // 8 % 8, xyz % 8], dim=1)
        coords.append(torch.cat([torch.full((tokens, 1), b), xyz], dim=1))
    coords = torch.cat(coords).int()
    return SparseTensor(torch.randn(coords.shape[0], channels, generator=g), coords)


def conditions(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    cond = torch.randn(batch, 9, FLOW["cond_channels"], generator=torch.Generator().manual_seed(seed))
    return cond, torch.zeros_like(cond)


def fast_pair(model, x, t, cond, neg, null: bool, **kwargs):
    """Both branches in one forward: prepared positive context plus the zero-token constant."""
    tokens, phases = model.dense_tokens(x, **kwargs), model.dense_phases(x)
    pos = model.prepare_condition(cond)
    if null:
        nul = model.prepare_condition(None, neg, tokens.shape[1])
        blocks = [type(p)(p.kv, n.null_out, n.null_rows) for p, n in zip(pos.blocks, nul.blocks, strict=True)]
    else:
        blocks = [
            type(p)(tuple(torch.cat([a, b]) for a, b in zip(p.kv, n.kv, strict=True)))
            for p, n in zip(pos.blocks, model.prepare_condition(neg).blocks, strict=True)
        ]
    out = model.forward_fast(tokens, t, PreparedCondition(blocks, 2 * tokens.shape[0]), phases, repeat=2)
    batch = tokens.shape[0]
    return model.from_dense_tokens(x, out[:batch]), model.from_dense_tokens(x, out[batch:])


def feats(v):
    return v.feats if isinstance(v, SparseTensor) else v


@torch.no_grad()
@pytest.mark.parametrize("null", [True, False], ids=["null-context", "cached-negative"])
def test_dense_flow_pair_matches_two_reference_forwards(dense_model, null):
    x = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([700.0, 250.0])
    cond, neg = conditions(2, 4)
    v_pos, v_neg = fast_pair(dense_model, x, t, cond, neg, null)
    torch.testing.assert_close(v_pos, dense_model(x, t, cond), **TIGHT)
    torch.testing.assert_close(v_neg, dense_model(x, t, neg), **TIGHT)


@torch.no_grad()
@pytest.mark.parametrize("samples", [1, 2])
def test_sparse_flow_pair_matches_two_reference_forwards(shape_model, samples):
    x = sparse_latent(samples, 23, 8, seed=5)
    t = torch.full((samples,), 600.0)
    cond, neg = conditions(1, 6)
    v_pos, v_neg = fast_pair(
        shape_model, x, t, cond.expand(samples, -1, -1), neg.expand(samples, -1, -1), True
    )
    torch.testing.assert_close(v_pos.feats, shape_model(x, t, cond).feats, **TIGHT)
    torch.testing.assert_close(v_neg.feats, shape_model(x, t, neg).feats, **TIGHT)
    assert torch.equal(v_pos.coords, x.coords)


@torch.no_grad()
def test_texture_flow_with_concat_cond_and_prepared_context(tex_model):
    x, shape = sparse_latent(1, 31, 8, seed=7), sparse_latent(1, 31, 8, seed=7)
    shape = x.replace(torch.randn_like(shape.feats))
    t = torch.tensor([900.0])
    cond, neg = conditions(1, 8)
    tex_model.check_fast_input(x, concat_cond=shape)
    tokens = tex_model.dense_tokens(x, concat_cond=shape)
    out = tex_model.forward_fast(tokens, t, tex_model.prepare_condition(cond), tex_model.dense_phases(x))
    reference = tex_model(x, t, cond, concat_cond=shape)
    torch.testing.assert_close(tex_model.from_dense_tokens(x, out).feats, reference.feats, **TIGHT)
    v_pos, v_neg = fast_pair(tex_model, x, t, cond, neg, True, concat_cond=shape)
    torch.testing.assert_close(v_neg.feats, tex_model(x, t, neg, concat_cond=shape).feats, **TIGHT)


@torch.no_grad()
def test_raw_condition_native_norm_and_real_rope_match_the_reference(dense_model):
    x = torch.randn(1, 8, 4, 4, 4, generator=torch.Generator().manual_seed(9))
    t = torch.tensor([400.0])
    cond, _ = conditions(1, 10)
    tokens, phases = dense_model.dense_tokens(x), dense_model.dense_phases(x)
    reference = dense_model.dense_tokens(dense_model(x, t, cond))
    # the image tokens themselves (no cache), native LayerNorm, and RoPE as (cos, sin)
    out = dense_model.forward_fast(tokens, t, cond, rotary_cos_sin(phases), native_norm=True)
    torch.testing.assert_close(out, reference, **TIGHT)


@torch.no_grad()
def test_zero_token_constant_is_the_cross_attention_output(dense_model):
    block = dense_model.blocks[0]
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 13, 64, generator=g)
    zeros = torch.zeros(2, 9, 32)
    context = block.prepare_context(None, zeros, null_tokens=2 * 13)
    assert context.kv is None and context.null_rows == 2 and context.null_out.shape == (64,)
    # the constant holds its own row only, not the `null_tokens` rows it was computed on
    assert context.null_out.untyped_storage().nbytes() == 64 * context.null_out.element_size()
    expected = block.cross_attn(block.norm2(x), zeros)
    torch.testing.assert_close(context.null_out.expand_as(expected), expected, **TIGHT)
    # a prepared (k, v) gives what the module computes from the context
    cond = torch.randn(2, 9, 32, generator=g)
    kv = block.cross_attn.context_kv(cond)
    torch.testing.assert_close(block.cross_attn(x, kv), block.cross_attn(x, cond), atol=0, rtol=0)


def test_real_rotary_matches_complex_rotary():
    phases = RotaryPositionEmbedder(16).phases(torch.randint(0, 64, (5, 7, 3)))
    x = torch.randn(5, 7, 4, 16)
    torch.testing.assert_close(apply_rotary(x, rotary_cos_sin(phases)), apply_rotary(x, phases), **TIGHT)


def test_prepared_condition_must_fit_the_batch(dense_model):
    x = torch.randn(1, 8, 4, 4, 4)
    cond, _ = conditions(1, 12)
    prepared = dense_model.prepare_condition(cond)
    assert prepared.batch_size == 1 and prepared.nbytes() > 0
    with pytest.raises(ValueError, match="prepared for 1 rows"):
        dense_model.forward_fast(dense_model.dense_tokens(x), torch.tensor([1.0]), prepared, None, repeat=2)
    with pytest.raises(ValueError, match="needs cond, null_cond or both"):
        dense_model.prepare_condition(None)


def test_fast_input_checks(shape_model, dense_model):
    unequal = SparseTensor(
        torch.randn(5, 8),
        torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]),
    )
    with pytest.raises(FastPathUnsupported, match="unequal token counts"):
        shape_model.check_fast_input(unequal)
    x = sparse_latent(1, 10, 8, seed=13)
    other = sparse_latent(1, 10, 8, seed=14)
    with pytest.raises(FastPathUnsupported, match="input channels"):
        shape_model.check_fast_input(x, concat_cond=other)
    with pytest.raises(FastPathUnsupported, match=r"x must be \[B, 8, 4, 4, 4\]"):
        dense_model.check_fast_input(torch.zeros(1, 8, 5, 5, 5))


def test_sdpa_backend_pins_the_kernel_on_cpu():
    q = torch.randn(1, 6, 2, 8)
    with sdpa_backend("math"):
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, q, q), **TIGHT)
    with pytest.raises(ValueError, match="unknown SDPA backend"):
        with sdpa_backend("fastest"):
            pass
    probe = probe_backends([AttentionShape(1, 12, 5, 2, 8)], torch.float32, torch.device("cpu"), ("math",), 1)
    assert probe.chosen == "math" and probe.rel_l2["math"] < 1e-5 and probe.ms["math"] > 0
    assert probe.as_dict()["shapes"] == ["1x2x12q x 5k x d8"]
