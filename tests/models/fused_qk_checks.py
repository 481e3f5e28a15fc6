"""Checks of `trellis2.modules.fused_qk` under Triton's CPU interpreter (run by `test_fused_qk.py` in a
process with `TRITON_INTERPRET=1`, which Triton reads when the kernel is defined)."""

from __future__ import annotations

import torch

from tests.random_flows import FLOW, randomize
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.modules import fused_qk
from trellis2.modules.norm import MultiHeadRMSNorm
from trellis2.modules.rope import RotaryPositionEmbedder, apply_rotary, rotary_cos_sin
from trellis2.modules.transformer import PreparedCondition

BF16_ULP = 2.0**-7  # relative spacing of bf16 values (at most)


def qkv_like(dtype: torch.dtype, batch: int = 2, tokens: int = 37, heads: int = 12, dim: int = 128):
    """The q of a `to_qkv` output: a strided `[B, L, H, D]` view."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, tokens, 3, heads, dim, generator=g) * 3).to(dtype)[:, :, 0]


def random_norm(heads: int, dim: int) -> MultiHeadRMSNorm:
    norm = MultiHeadRMSNorm(dim, heads)
    with torch.no_grad():
        norm.gamma.mul_(torch.rand(heads, dim, generator=torch.Generator().manual_seed(1)) + 0.5)
    return norm


def check_the_kernel_rounds_as_the_eager_code() -> None:
    q = qkv_like(torch.bfloat16)
    norm = random_norm(12, 128)
    positions = torch.randint(0, 64, (2, 37, 3), generator=torch.Generator().manual_seed(2))
    phases = RotaryPositionEmbedder(128).phases(positions)
    cos, sin = rotary_cos_sin(phases)
    # RoPE alone: the same float32 products, the same rounding: bitwise
    assert torch.equal(fused_qk.norm_rotary(q, None, cos, sin), apply_rotary(q, phases))
    shared = phases[:1]  # phases shared by the samples, [1, L, D/2]
    assert torch.equal(fused_qk.norm_rotary(q, None, *rotary_cos_sin(shared)), apply_rotary(q, shared))
    assert torch.equal(fused_qk.norm_rotary(q, None), q.contiguous())
    # the norm: only the order of the sum of squares differs, so a rare value is one bf16 step off
    for out, reference in (
        (fused_qk.norm_rotary(q, norm), norm(q)),
        (fused_qk.norm_rotary(q, norm, cos, sin), apply_rotary(norm(q), phases)),
    ):
        assert out.shape == reference.shape and out.dtype == torch.bfloat16 and out.is_contiguous()
        off = out != reference
        assert off.float().mean() < 1e-4, f"{int(off.sum())} of {off.numel()} values differ"
        step = (out.float() - reference.float()).abs() / reference.float().abs().clamp_min(1e-30)
        assert not off.any() or float(step[off].max()) <= BF16_ULP
    q32 = qkv_like(torch.float32)
    torch.testing.assert_close(fused_qk.norm_rotary(q32, norm, cos, sin), apply_rotary(norm(q32), phases))


def check_the_flow_with_the_fused_kernel_gives_the_reference() -> None:
    model = randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **FLOW), 0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 4, 4, 4, generator=g)
    t = torch.tensor([400.0, 700.0])
    cond = torch.randn(2, 10, 32, generator=g)
    tokens, phases = model.dense_tokens(x), model.dense_phases(x)
    prepared = model.prepare_condition(cond)
    assert isinstance(prepared, PreparedCondition)
    with torch.no_grad():
        reference = model.forward_fast(tokens, t, prepared, phases)
        fused = model.forward_fast(tokens, t, prepared, rotary_cos_sin(phases), fused_qk=True)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def check_what_the_kernel_does_not_take() -> None:
    assert not fused_qk.supported(torch.zeros(1, 4, 2, 12))  # head size not a power of two
    assert not fused_qk.supported(torch.zeros(4, 2, 16))  # packed tokens
    assert not fused_qk.supported(torch.zeros(1, 4, 2, 16, dtype=torch.float64))


@torch.no_grad()
def main() -> None:
    assert fused_qk.INTERPRETED, "run with TRITON_INTERPRET=1"
    check_the_kernel_rounds_as_the_eager_code()
    check_the_flow_with_the_fused_kernel_gives_the_reference()
    check_what_the_kernel_does_not_take()
    print("fused_qk checks passed")


if __name__ == "__main__":
    main()
