"""Fixtures shared by the model parity tests."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.golden_utils import DEVICES


@pytest.fixture
def exact_float32_matmul():
    """float32 parity needs IEEE float32 GEMMs and convs on CUDA (no TF32), whatever other tests set."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module", params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def io04(golden_dir):
    return load_file(golden_dir / "case04_shape_decoder" / "case04_io.safetensors")


@pytest.fixture(scope="module")
def io05(golden_dir):
    return load_file(golden_dir / "case05_tex_decoder" / "case05_io.safetensors")
