"""The fused q/k norm + RoPE kernel (`trellis2.modules.fused_qk`) against the eager code, on the CPU through
Triton's interpreter (the checks are in `fused_qk_checks.py`; on CUDA the benchmarks measure it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trellis2.modules import fused_qk

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    not fused_qk.available(), reason="Triton is not installed (a dev install has it on Linux)"
)
def test_the_kernel_under_the_interpreter_rounds_as_the_eager_code():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "from tests.models.fused_qk_checks import main; main()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fused_qk checks passed" in done.stdout


def test_on_the_cpu_the_fast_path_keeps_the_eager_code():
    import torch

    assert not fused_qk.supported(torch.zeros(1, 4, 2, 16))  # a CPU tensor, no interpreter
