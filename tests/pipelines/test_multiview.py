"""Multi-view generation on the tiny models: equivalence with single-image runs and which views
condition which sampling steps (spy models)."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from tests.pipelines.images import object_image
from trellis2.pipelines import ImageInputError

FLOW_STAGES = {  # flow checkpoint -> (stage, sampler) for pipeline type 1024_cascade
    "sparse_structure_flow_model": ("sparse_structure_sampler", 512),
    "shape_slat_flow_model_512": ("shape_slat_sampler", 512),
    "shape_slat_flow_model_1024": ("shape_slat_sampler", 1024),
    "tex_slat_flow_model_1024": ("tex_slat_sampler", 1024),
}


@pytest.mark.parametrize("mode", ["stochastic", "multidiffusion"])
def test_copies_of_one_image_reproduce_the_single_image_result(tiny_pipeline, mode):
    image = object_image()
    single = tiny_pipeline.run(image, seed=11, pipeline_type="1024_cascade")[0]
    multi = tiny_pipeline.run_multi_image([image] * 3, mode=mode, seed=11, pipeline_type="1024_cascade")[0]
    assert torch.equal(multi.coords, single.coords) and torch.equal(multi.faces, single.faces)
    if mode == "stochastic":
        assert torch.equal(multi.vertices, single.vertices) and torch.equal(multi.attrs, single.attrs)
    else:  # the average of identical batched predictions differs only by float rounding
        torch.testing.assert_close(multi.vertices, single.vertices, atol=1e-5, rtol=0)
        torch.testing.assert_close(multi.attrs, single.attrs, atol=1e-4, rtol=1e-3)


class SpyFlow:
    """Forwards to a flow model and records the conditioning of every call."""

    def __init__(self, inner, log: list) -> None:
        self.inner, self.log = inner, log

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, t, cond, **kwargs):
        self.log.append(cond.clone())
        return self.inner(x, t, cond, **kwargs)


def _spy_run(pipe, monkeypatch, mode, views):
    logs = defaultdict(list)
    real = pipe.model

    def model(key):
        return SpyFlow(real(key), logs[key]) if key in FLOW_STAGES else real(key)

    monkeypatch.setattr(pipe, "model", model)
    pipe.run_multi_image(views, mode=mode, seed=4, pipeline_type="1024_cascade")
    prepared = [pipe.preprocess_image(v) for v in views]
    features = {res: [pipe.image_features([p], res) for p in prepared] for res in (512, 1024)}
    return logs, features


def _view_index(cond: torch.Tensor, views: list[torch.Tensor]) -> int:
    matches = [i for i, v in enumerate(views) if v.shape == cond.shape and torch.equal(v, cond)]
    assert len(matches) == 1, "conditioning is not exactly one view"
    return matches[0]


def _views():
    return [object_image(color) for color in ((200, 80, 40), (40, 200, 80), (80, 40, 200))]


def test_stochastic_mode_conditions_step_k_on_view_k_mod_v(tiny_pipeline, monkeypatch):
    logs, features = _spy_run(tiny_pipeline, monkeypatch, "stochastic", _views())
    for key, (sampler, res) in FLOW_STAGES.items():
        positive = [c for c in logs[key] if c.abs().sum() > 0]
        steps = tiny_pipeline.config.__getattribute__(sampler).params["steps"]
        assert len(positive) == steps, key
        assert [_view_index(c, features[res]) for c in positive] == [k % 3 for k in range(steps)], key


def test_multidiffusion_mode_uses_every_view_at_every_step(tiny_pipeline, monkeypatch):
    logs, features = _spy_run(tiny_pipeline, monkeypatch, "multidiffusion", _views())
    for key, (sampler, res) in FLOW_STAGES.items():
        positive = [c for c in logs[key] if c.abs().sum() > 0]
        steps = tiny_pipeline.config.__getattribute__(sampler).params["steps"]
        assert len(positive) == steps, key  # all views batched into one forward per step
        for cond in positive:
            assert cond.shape[0] == 3
            assert [_view_index(cond[i : i + 1], features[res]) for i in range(3)] == [0, 1, 2]
        negative = [c for c in logs[key] if c.abs().sum() == 0]
        assert all(c.shape[0] == 1 for c in negative)


def test_multidiffusion_averages_then_guides(tiny_pipeline):
    """With views split over several forwards the result equals the one-forward batch."""
    views = _views()[:2]
    one = tiny_pipeline.run_multi_image(views, mode="multidiffusion", seed=2, pipeline_type="512")[0]
    tiny_pipeline.max_batch_tokens = 1  # one view per forward
    try:
        split = tiny_pipeline.run_multi_image(views, mode="multidiffusion", seed=2, pipeline_type="512")[0]
    finally:
        del tiny_pipeline.max_batch_tokens
    assert torch.equal(one.coords, split.coords)
    torch.testing.assert_close(one.attrs, split.attrs, atol=1e-4, rtol=1e-3)


def test_bad_multiview_requests(tiny_pipeline):
    with pytest.raises(ImageInputError, match="2 to 8"):
        tiny_pipeline.run_multi_image([object_image()], mode="stochastic")
    with pytest.raises(ImageInputError, match="2 to 8"):
        tiny_pipeline.run_multi_image([object_image()] * 9, mode="stochastic")
    with pytest.raises(ValueError, match="mode"):
        tiny_pipeline.run_multi_image([object_image()] * 2, mode="average")
    transparent = object_image()
    transparent.putalpha(0)
    with pytest.raises(ImageInputError, match="view 2"):
        tiny_pipeline.run_multi_image([object_image(), transparent], mode="stochastic", pipeline_type="512")
