"""Comparison helpers for the golden vectors (importable from any test folder)."""

from __future__ import annotations

import numpy as np
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # every parity test runs on each


def assert_golden_close(actual, expected, atol: float = 1e-4, rtol: float = 1e-3, name: str = "") -> None:
    """The golden README's rule: |a - b| <= atol + rtol * |b|, elementwise, in float32."""
    a = torch.as_tensor(np.asarray(actual) if not torch.is_tensor(actual) else actual).detach().float().cpu()
    b = (
        torch.as_tensor(np.asarray(expected) if not torch.is_tensor(expected) else expected)
        .detach()
        .float()
        .cpu()
    )
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} != golden {tuple(b.shape)}"
    err = (a - b).abs()
    bound = atol + rtol * b.abs()
    bad = err > bound
    if bad.any():
        worst = (err - bound).argmax()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {b.numel()} values out of tolerance; "
            f"max abs err {float(err.max()):.3e} (at flat index {int(worst)})"
        )


HALF_REL_L2 = 2e-2  # ||a - b|| / ||b||: bf16-sized (measured ~2e-3 for fp16 decoders, ~7e-3 for bf16 flows)
HALF_REL_MAX = 3e-2  # max |a - b| / max |b| (measured up to 6.2e-3)


def assert_half_precision_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """fp16 / bf16 outputs against the float32 golden: relative L2 and relative max error bounds."""
    a, b = actual.detach().float().cpu(), expected.float()
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} != golden {tuple(b.shape)}"
    rel_l2 = float((a - b).norm() / b.norm())
    rel_max = float((a - b).abs().max() / b.abs().max())
    assert rel_l2 <= HALF_REL_L2 and rel_max <= HALF_REL_MAX, (
        f"{name}: rel L2 {rel_l2:.2e}, rel max {rel_max:.2e}"
    )


def assert_coords_equal(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Voxel coordinates: int32, identical to the golden ones."""
    assert actual.dtype == torch.int32 and torch.equal(actual.cpu(), expected), f"{name} differ"
