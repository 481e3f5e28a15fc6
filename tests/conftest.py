"""Shared test fixtures: where the golden vectors live and how to compare against them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("GENESIS_SHARED_DIR", REPO_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED_DIR / "golden"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """`../shared/golden`: test vectors produced by the official implementation."""
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden vectors not found at {GOLDEN_DIR} (set GENESIS_SHARED_DIR)")
    return GOLDEN_DIR


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
