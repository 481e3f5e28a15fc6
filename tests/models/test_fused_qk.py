"""The fused q/k norm + RoPE kernel (`trellis2.modules.fused_qk`) against the eager code, on the CPU through
Triton's interpreter (the checks are in `fused_qk_checks.py`; on CUDA the benchmarks measure it)."""

from __future__ import annotations

import pytest
import torch

from tests.models.interpreted import run_interpreted
from tests.random_flows import FLOW, randomize
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.modules import fused_qk
from trellis2.samplers import FastPathOptions, FlowRunner


@pytest.mark.skipif(
    not fused_qk.available(), reason="Triton is not installed (a dev install has it on Linux)"
)
def test_the_kernel_under_the_interpreter_rounds_as_the_eager_code():
    run_interpreted("tests.models.fused_qk_checks", "fused_qk checks passed")


def test_on_the_cpu_the_fast_path_keeps_the_eager_code():
    assert not fused_qk.supported(torch.zeros(1, 4, 2, 16))  # a CPU tensor, no interpreter


def test_the_runner_asked_for_the_kernel_on_the_cpu_says_why_not_and_keeps_the_bits():
    model = randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **FLOW), 0)
    g = torch.Generator().manual_seed(4)
    x, cond = torch.randn(1, 8, 4, 4, 4, generator=g), torch.randn(1, 10, 32, generator=g)
    neg = torch.zeros_like(cond)
    t = torch.tensor([500.0])
    with torch.no_grad():
        plain = FlowRunner(model, x, cond, neg, FastPathOptions(fused_qk=False)).positive(x, t)
        asked = FlowRunner(model, x, cond, neg, FastPathOptions())  # the kernel is asked for by default
        assert asked.report.fused_qk.startswith("not used") and not asked.fused_qk
        assert torch.equal(asked.positive(x, t), plain)
