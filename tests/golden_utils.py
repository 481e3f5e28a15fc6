"""Comparison helpers for the golden vectors (importable from any test folder)."""

from __future__ import annotations

import numpy as np
import torch


def assert_golden_close(actual, expected, atol: float = 1e-4, rtol: float = 1e-3, name: str = "") -> None:
    """The golden README's rule: |a - b| <= atol + rtol * |b|, elementwise, in float32."""
    a = torch.as_tensor(np.asarray(actual) if not torch.is_tensor(actual) else actual).detach().float().cpu()
    b = torch.as_tensor(np.asarray(expected) if not torch.is_tensor(expected) else expected).detach().float().cpu()
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
