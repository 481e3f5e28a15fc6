"""Checks of `trellis2.modules.fp8_linear`'s Triton quantizer under Triton's CPU interpreter (run by
`test_fp8_linear.py` in a process with `TRITON_INTERPRET=1`, which Triton reads when the kernel is defined)."""

from __future__ import annotations

import torch

from trellis2.modules import fp8_linear


def same_bits(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0].view(torch.uint8), b[0].view(torch.uint8)) and torch.equal(a[1], b[1])


def check_the_fused_quantizer_gives_the_definitions_bits() -> None:
    g = torch.Generator().manual_seed(0)
    for rows, cols in ((5, 48), (3, 1536), (2, 6144)):
        x = (torch.randn(rows, cols, generator=g) * 3).to(torch.bfloat16)
        x[0] = 0  # an all-zero row keeps a finite scale
        x[1, :4] = torch.tensor([-0.0, 1e-6, -1e-6, 3e-3])  # signed zeros and e4m3 subnormals
        assert same_bits(fp8_linear.quantize_rows_fused(x), fp8_linear.quantize_rows(x)), (rows, cols)
    # A row whose largest value is 448 has the scale 1: the values below are ties, rounded to even.
    ties = torch.tensor([448.0, 124.0, -124.0, 336.0, 2.0**-10, 3 * 2.0**-10, 2.0**-7 + 2.0**-11, 0.0])
    x = ties.to(torch.bfloat16)[None]
    fused = fp8_linear.quantize_rows_fused(x)
    assert same_bits(fused, fp8_linear.quantize_rows(x))
    want = [448.0, 128.0, -128.0, 320.0, 0.0, 2.0**-8, 2.0**-7, 0.0]
    assert fused[0].float()[0].tolist() == want, fused[0].float()[0].tolist()
    assert fp8_linear.fused_quantizer_matches(x)


def main() -> None:
    assert fp8_linear.INTERPRETED, "run with TRITON_INTERPRET=1"
    check_the_fused_quantizer_gives_the_definitions_bits()
    print("fp8 checks passed")


if __name__ == "__main__":
    main()
