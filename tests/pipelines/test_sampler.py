"""FlowEulerGuidanceIntervalSampler against golden case 06 (dense run replayed, sparse run live)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.golden_utils import assert_golden_close
from trellis2.modules.sparse import SparseTensor
from trellis2.progress import JobCancelled
from trellis2.samplers import FlowEulerGuidanceIntervalSampler, time_grid

TRAJ = {"atol": 5e-4, "rtol": 1e-3}


class ReplayModel:
    """Returns the official model outputs in call order and checks each call's t and cond."""

    def __init__(self, io: dict[str, torch.Tensor]) -> None:
        self.io = io
        self.calls = 0

    def __call__(self, x, t, cond, **kwargs):
        k = self.calls
        self.calls += 1
        assert torch.equal(t, self.io["model_t"][k]), f"call {k}: t {t} != {self.io['model_t'][k]}"
        expected_cond = self.io["neg_cond"] if self.io["model_is_neg"][k] else self.io["cond"]
        assert torch.equal(cond, expected_cond), f"call {k}: wrong conditioning"
        return self.io["model_out"][k].clone()


def _params(golden_dir, name):
    return json.loads((golden_dir / "case06_sampler" / name).read_text())


def test_time_grid_matches_golden_and_keeps_exact_boundary(golden_dir):
    io = load_file(golden_dir / "case06_sampler" / "case06_dense_io.safetensors")
    assert np.array_equal(time_grid(12, 5.0), io["t_seq"].numpy())
    assert time_grid(12, 3.0)[8] == 0.6  # the guided boundary step of the shape schedule


def test_dense_trajectory_matches_golden(golden_dir):
    io = load_file(golden_dir / "case06_sampler" / "case06_dense_io.safetensors")
    spec = _params(golden_dir, "sampler_params.json")
    model = ReplayModel(io)
    out = FlowEulerGuidanceIntervalSampler(**spec["args"]).sample(
        model, io["noise"], io["cond"], io["neg_cond"], keep_trajectory=True, **spec["params"]
    )
    assert model.calls == io["model_out"].shape[0] == 22
    for k in range(12):
        assert_golden_close(out.pred_x_t[k], io["x_t"][k], **TRAJ, name=f"x_t[{k}]")
        assert_golden_close(out.pred_x_0[k], io["pred_x_0"][k], **TRAJ, name=f"pred_x_0[{k}]")
    assert_golden_close(out.samples, io["samples"], **TRAJ, name="samples")


def test_sparse_trajectory_matches_golden(golden_dir):
    loading = pytest.importorskip("trellis2.models.loading")
    io = load_file(golden_dir / "case06_sampler" / "case06_sparse_io.safetensors")
    spec = _params(golden_dir, "sampler_params_sparse.json")
    model = loading.from_pretrained(str(golden_dir / "case03_slat_flow" / "shape_flow"))
    noise = SparseTensor(io["noise_feats"], io["coords"])
    out = FlowEulerGuidanceIntervalSampler(**spec["args"]).sample(
        model, noise, io["cond"], io["neg_cond"], keep_trajectory=True, **spec["params"]
    )
    for k in range(12):
        assert_golden_close(out.pred_x_t[k].feats, io["x_t_feats"][k], **TRAJ, name=f"x_t[{k}]")
        assert_golden_close(out.pred_x_0[k].feats, io["pred_x_0_feats"][k], **TRAJ, name=f"x_0[{k}]")
    assert_golden_close(out.samples.feats, io["samples_feats"], **TRAJ, name="samples")


class CountingModel:
    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []

    def __call__(self, x, t, cond, **kwargs):
        self.calls.append((float(t[0]), bool((cond == 0).all())))
        return 0.1 * x + cond.mean()


def test_interval_is_inclusive_and_strength_one_is_single_pass():
    model = CountingModel()
    x = torch.randn(1, 2, 3)
    cond, neg = torch.ones(1, 2, 3), torch.zeros(1, 2, 3)
    sampler = FlowEulerGuidanceIntervalSampler()
    sampler.sample(
        model, x, cond, neg, steps=12, rescale_t=3.0, guidance_strength=7.5, guidance_interval=[0.6, 1.0]
    )
    assert len(model.calls) == 9 * 2 + 3  # steps 0..8 guided (t_8 == 0.6 exactly)
    assert [neg for _, neg in model.calls[:2]] == [False, True]  # positive call first
    model.calls.clear()
    sampler.sample(
        model, x, cond, neg, steps=12, rescale_t=3.0, guidance_strength=1.0, guidance_interval=[0.6, 0.9]
    )
    assert len(model.calls) == 12 and not any(neg for _, neg in model.calls)


def test_progress_and_cancel():
    seen = []

    class StopAfter:
        def is_set(self) -> bool:
            return len(seen) >= 3

    model = CountingModel()
    with pytest.raises(JobCancelled):
        FlowEulerGuidanceIntervalSampler().sample(
            model,
            torch.randn(1, 4),
            torch.ones(1, 4),
            torch.zeros(1, 4),
            steps=10,
            guidance_strength=1.0,
            progress=lambda s, k, n: seen.append((s, k, n)),
            stage="ss",
            cancel=StopAfter(),
        )
    assert seen == [("ss", 1, 10), ("ss", 2, 10), ("ss", 3, 10)]
    assert len(model.calls) == 3


def test_bad_parameters_are_reported():
    sampler = FlowEulerGuidanceIntervalSampler()
    with pytest.raises(ValueError, match="steps"):
        sampler.sample(CountingModel(), torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2), steps=0)
    with pytest.raises(ValueError, match="guidance_interval"):
        sampler.sample(
            CountingModel(),
            torch.zeros(1, 2),
            torch.ones(1, 2),
            torch.zeros(1, 2),
            steps=2,
            guidance_interval=[0.5],
        )
