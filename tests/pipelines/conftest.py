"""Fixtures: one tiny TRELLIS.2 models folder per test session, run single-threaded.

The tiny networks are far too small to gain from intra-op threads, and on a loaded machine
OpenMP threads that spin and get descheduled make them ~10x slower, so these tests use one thread
(restored afterwards for the rest of the suite).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))

from make_tiny_models import make_tiny_models  # noqa: E402

from trellis2.pipelines import Trellis2MultiViewPipeline  # noqa: E402


@contextmanager
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def _single_thread_module() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_models")
    with single_thread():
        make_tiny_models(out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_models_dir) -> Trellis2MultiViewPipeline:
    return Trellis2MultiViewPipeline.from_pretrained(tiny_models_dir, device="cpu")
