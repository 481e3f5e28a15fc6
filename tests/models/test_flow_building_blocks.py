"""Flow-model building blocks: attention (dense / packed varlen on SDPA), RoPE, per-block modulation."""

from __future__ import annotations

import math

import pytest
import torch

from trellis2.modules.attention import attention, packed_attention
from trellis2.modules.rope import RotaryPositionEmbedder, apply_rotary


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of one sequence `[L, H, D]` in float64."""
    q, k, v = q.double(), k.double(), v.double()
    w = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("hqk,khd->qhd", w.softmax(-1), v).float()


def test_packed_attention_unequal_lengths_matches_reference():
    g = torch.Generator().manual_seed(0)
    q_lens, kv_lens = [5, 0, 11, 3], [4, 6, 9, 1]
    q = torch.randn(sum(q_lens), 2, 8, generator=g)
    k = torch.randn(sum(kv_lens), 2, 8, generator=g)
    v = torch.randn(sum(kv_lens), 2, 8, generator=g)
    out = packed_attention(q, k, v, q_lens, kv_lens)
    qs, ks = 0, 0
    for ql, kl in zip(q_lens, kv_lens, strict=True):
        if ql:
            ref = reference_attention(q[qs : qs + ql], k[ks : ks + kl], v[ks : ks + kl])
            torch.testing.assert_close(out[qs : qs + ql], ref, atol=1e-5, rtol=1e-5)
        qs, ks = qs + ql, ks + kl


def test_dense_and_packed_layouts_agree():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 7, 4, 16, generator=g) for _ in range(3))
    dense = attention(q, k, v)
    packed = attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), [7] * 3, [7] * 3)
    torch.testing.assert_close(packed.reshape(dense.shape), dense)
    # packed queries against a dense context (cross-attention with [B, T, H, D] image tokens)
    mixed = attention(q.flatten(0, 1), k, v, [7] * 3)
    torch.testing.assert_close(mixed.reshape(dense.shape), dense)
    for b in range(3):
        torch.testing.assert_close(dense[b], reference_attention(q[b], k[b], v[b]), atol=1e-5, rtol=1e-5)


def test_packed_attention_rejects_inconsistent_lengths():
    q = torch.zeros(5, 1, 4)
    with pytest.raises(ValueError, match="do not match the packed tensors"):
        packed_attention(q, q, q, [2, 2], [2, 3])
    with pytest.raises(ValueError, match="need q_seqlens"):
        attention(q, q, q)


def test_rope_worked_example():
    """Spec B.4: head dim 128, token at (3, 0, 5)."""
    phases = RotaryPositionEmbedder(128).phases(torch.tensor([[3, 0, 5]]))[0]
    angles = phases.angle().double()
    j = torch.arange(21, dtype=torch.float64)
    torch.testing.assert_close(angles[:21], 3 / 10000 ** (j / 21), atol=1e-5, rtol=1e-5, check_dtype=False)
    assert torch.all(angles[21:42] == 0)
    wrapped = torch.remainder(5 / 10000 ** (j / 21) + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(angles[42:63], wrapped, atol=1e-5, rtol=1e-5, check_dtype=False)
    assert phases[63] == 1


def test_apply_rotary_rotates_interleaved_pairs():
    x = torch.arange(8, dtype=torch.float32).reshape(1, 1, 8)  # one token, one head, D = 8 (4 pairs)
    theta = torch.tensor([[0.5, 0.0, -1.0, 2.0]])
    out = apply_rotary(x, torch.polar(torch.ones_like(theta), theta))[0, 0]
    for p in range(4):
        a, b, c, s = x[0, 0, 2 * p], x[0, 0, 2 * p + 1], math.cos(theta[0, p]), math.sin(theta[0, p])
        torch.testing.assert_close(out[2 * p : 2 * p + 2], torch.stack([a * c - b * s, a * s + b * c]))
    assert (
        apply_rotary(x.to(torch.bfloat16), torch.polar(torch.ones_like(theta), theta)).dtype == torch.bfloat16
    )


def test_per_block_modulation_equals_shared_modulation():
    """`share_mod=False` blocks (own SiLU+Linear) equal shared modulation with folded-in per-block offsets."""
    from trellis2.models.sparse_structure_flow import SparseStructureFlowModel

    cfg = dict(
        resolution=4,
        in_channels=4,
        model_channels=32,
        cond_channels=16,
        out_channels=4,
        num_blocks=2,
        num_heads=2,
        mlp_ratio=2.0,
        pe_mode="rope",
        qk_rms_norm=True,
        qk_rms_norm_cross=False,
    )
    torch.manual_seed(0)
    shared = SparseStructureFlowModel(share_mod=True, **cfg).eval()
    for block in shared.blocks:
        torch.nn.init.normal_(block.modulation, std=0.3)
    own = SparseStructureFlowModel(share_mod=False, **cfg).eval()
    assert "adaLN_modulation.1.weight" not in own.state_dict()
    assert "blocks.0.adaLN_modulation.1.weight" in own.state_dict()
    assert "blocks.0.cross_attn.q_rms_norm.gamma" not in own.state_dict()
    state = {k: v for k, v in shared.state_dict().items() if "modulation" not in k}
    for i, block in enumerate(shared.blocks):
        state[f"blocks.{i}.adaLN_modulation.1.weight"] = shared.adaLN_modulation[1].weight
        state[f"blocks.{i}.adaLN_modulation.1.bias"] = shared.adaLN_modulation[1].bias + block.modulation
    own.load_state_dict(state, strict=True)
    x, cond = torch.randn(2, 4, 4, 4, 4), torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            own(x, torch.tensor([10.0, 900.0]), cond),
            shared(x, torch.tensor([10.0, 900.0]), cond),
            atol=1e-5,
            rtol=1e-5,
        )
