"""The fast sampling path against the reference path on the CPU, float32, tight tolerance: batched
guidance pairs and the per-run context cache give the reference trajectory; what runs where. Where
the model outputs are the same bits, so is the whole trajectory (no order-dependent accumulation in
the sampler, and a batched pair only where it is exact)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.pipelines.images import object_image
from tests.random_flows import FLOW, randomize
from trellis2.models.sparse_structure_flow import SparseStructureFlowModel
from trellis2.models.structured_latent_flow import SLatFlowModel
from trellis2.modules.sparse import SparseTensor, sample_std
from trellis2.pipelines import JobCancelled, Trellis2ImageTo3DPipeline
from trellis2.samplers import FastPathOptions, FlowEulerGuidanceIntervalSampler, FlowRunner, resolve_fast_path

TIGHT = {"atol": 2e-5, "rtol": 1e-5}
STAGE1 = dict(
    steps=6, guidance_strength=7.5, guidance_rescale=0.7, guidance_interval=[0.6, 1.0], rescale_t=5.0
)
STAGE2 = dict(
    steps=5, guidance_strength=7.5, guidance_rescale=0.5, guidance_interval=[0.6, 1.0], rescale_t=3.0
)
OPTIONS = {
    "all levers": FastPathOptions(),
    "no batched pair": FastPathOptions(batch_guidance=False),
    "no context cache": FastPathOptions(cache_context=False),
    "no null context": FastPathOptions(null_context=False),
    "nothing but the runner": FastPathOptions(
        batch_guidance=False, cache_context=False, null_context=False, native_norm=False
    ),
}


@pytest.fixture(scope="module")
def dense_model() -> SparseStructureFlowModel:
    return randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **FLOW), 0)


@pytest.fixture(scope="module")
def tex_model() -> SLatFlowModel:
    return randomize(SLatFlowModel(resolution=8, in_channels=16, out_channels=8, **FLOW), 1)


def conditions(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    cond = torch.randn(1, 9, 32, generator=torch.Generator().manual_seed(seed))
    return cond, torch.zeros_like(cond)


def sparse_latent(tokens: int, channels: int, seed: int) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randperm(512, generator=g)[:tokens].sort().values
    coords = torch.stack([torch.zeros_like(xyz), xyz // 64, xyz // 8 % 8, xyz % 8], dim=1).int()
    return SparseTensor(torch.randn(tokens, channels, generator=g), coords)


def expected_calls(report: Any, guided: int, conditional: int, batched: bool = True) -> dict[str, int]:
    """Calls of a run with `guided` CFG steps: pairs where batched and exact (the probe), else two."""
    if batched and report.pair_probe == "exact":
        return {"pair": guided, "positive": conditional}
    return {"positive": guided + conditional, "negative": guided}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_dense_sampling_fast_equals_reference(dense_model, name):
    noise = torch.randn(1, 8, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    cond, neg = conditions(3)
    sampler = FlowEulerGuidanceIntervalSampler()
    ref = sampler.sample(dense_model, noise, cond, neg, fast=False, keep_trajectory=True, **STAGE1)
    fast = sampler.sample(dense_model, noise, cond, neg, fast=OPTIONS[name], keep_trajectory=True, **STAGE1)
    for k, (a, b) in enumerate(zip(fast.pred_x_t, ref.pred_x_t, strict=True)):
        torch.testing.assert_close(a, b, **TIGHT, msg=lambda m, k=k: f"step {k}: {m}")
    torch.testing.assert_close(fast.samples, ref.samples, **TIGHT)
    assert fast.fast_path.used and not ref.fast_path.used
    # rescale_t 5, 6 steps: t = 1, .96, .91, .83, .71, .5 -> five guided steps, one conditional one
    assert fast.fast_path.calls == expected_calls(fast.fast_path, 5, 1, OPTIONS[name].batch_guidance)
    assert fast.fast_path.null_context == (OPTIONS[name].null_context and OPTIONS[name].cache_context)
    assert fast.fast_path.graphs == {} and fast.fast_path.attention_backend is None  # CPU: no graphs


@pytest.mark.parametrize("name", ["all levers", "no null context"])
def test_texture_sampling_fast_equals_reference(tex_model, name):
    noise, shape = sparse_latent(40, 8, seed=4), sparse_latent(40, 8, seed=4)
    shape = noise.replace(torch.randn_like(shape.feats))
    cond, neg = conditions(5)
    sampler = FlowEulerGuidanceIntervalSampler()
    ref = sampler.sample(tex_model, noise, cond, neg, fast=False, concat_cond=shape, **STAGE2)
    fast = sampler.sample(tex_model, noise, cond, neg, fast=OPTIONS[name], concat_cond=shape, **STAGE2)
    torch.testing.assert_close(fast.samples.feats, ref.samples.feats, **TIGHT)
    assert torch.equal(fast.samples.coords, ref.samples.coords)
    assert fast.fast_path.calls == expected_calls(fast.fast_path, 4, 1)


def test_unconditional_only_and_conditional_only_runs(dense_model):
    noise = torch.randn(1, 8, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    cond, neg = conditions(7)
    sampler = FlowEulerGuidanceIntervalSampler()
    for strength, calls in ((0.0, {"negative": 5, "positive": 1}), (1.0, {"positive": 6})):
        params = dict(STAGE1, guidance_strength=strength)
        ref = sampler.sample(dense_model, noise, cond, neg, fast=False, **params)
        fast = sampler.sample(dense_model, noise, cond, neg, fast=True, **params)
        torch.testing.assert_close(fast.samples, ref.samples, **TIGHT)
        assert fast.fast_path.calls == calls


def test_runner_pair_equals_reference_calls_at_changing_inputs(tex_model):
    x, shape = sparse_latent(30, 8, seed=8), sparse_latent(30, 8, seed=8)
    shape = x.replace(torch.randn_like(shape.feats))
    cond, neg = conditions(9)
    runner = FlowRunner(tex_model, x, cond, neg, FastPathOptions(), concat_cond=shape)
    with torch.no_grad():
        for step in range(3):
            x_step = x.replace(x.feats * (1 + step) - step)
            t = torch.tensor([1000.0 - 300 * step])
            v_pos, v_neg = runner.pair(x_step, t)
            torch.testing.assert_close(
                v_pos.feats, tex_model(x_step, t, cond, concat_cond=shape).feats, **TIGHT
            )
            torch.testing.assert_close(
                v_neg.feats, tex_model(x_step, t, neg, concat_cond=shape).feats, **TIGHT
            )
    assert runner.report.calls in ({"pair": 3}, {"positive": 3, "negative": 3})
    assert ("pair" in runner.report.calls) == (runner.report.pair_probe == "exact")
    assert runner.report.context_cache_mib > 0
    runner.close()


def test_what_the_fast_path_does_not_cover_runs_the_reference_path(dense_model, tex_model):
    sampler = FlowEulerGuidanceIntervalSampler()
    cond, neg = conditions(10)
    # a conditional velocity (multi-view conditioning)
    out = sampler.sample(
        dense_model,
        torch.randn(1, 8, 4, 4, 4),
        lambda model, x, t, step, **kw: model(x, t, cond, **kw),
        neg,
        fast=True,
        **STAGE1,
    )
    assert not out.fast_path.used and "conditional velocity" in out.fast_path.reason
    # samples of unequal token counts (the packed path)
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=torch.int32)
    noise = SparseTensor(torch.randn(3, 8), coords)
    out = sampler.sample(
        tex_model,
        noise,
        cond,
        neg,
        fast=True,
        concat_cond=noise.replace(torch.randn(3, 8)),
        **dict(STAGE2, steps=1),
    )
    assert not out.fast_path.used and "unequal token counts" in out.fast_path.reason
    # a model without a fast path
    out = sampler.sample(
        lambda x, t, c: 0.1 * x,
        torch.randn(1, 4),
        torch.ones(1, 1, 4),
        fast=True,
        steps=2,
        guidance_strength=1.0,
    )
    assert not out.fast_path.used and "has no fast path" in out.fast_path.reason


def test_fast_path_setting_defaults_to_fast_on_cuda_only():
    assert resolve_fast_path(None, "cpu") is None and resolve_fast_path("auto", "cpu") is None
    assert resolve_fast_path(None, "cuda") == FastPathOptions() == resolve_fast_path(True, "cpu")
    assert resolve_fast_path("reference", "cuda") is None and resolve_fast_path(False, "cuda") is None
    custom = FastPathOptions(cuda_graphs=False)
    assert resolve_fast_path(custom, "cpu") is custom
    with pytest.raises(ValueError, match="fast path setting"):
        resolve_fast_path("quick", "cpu")
    with pytest.raises(ValueError, match="attention_backend"):
        FastPathOptions(attention_backend="fa9")


def test_cancel_during_a_fast_run(dense_model):
    seen = []

    class StopAfterTwo:
        def is_set(self) -> bool:
            return len(seen) >= 2

    cond, neg = conditions(11)
    with pytest.raises(JobCancelled):
        FlowEulerGuidanceIntervalSampler().sample(
            dense_model,
            torch.randn(1, 8, 4, 4, 4),
            cond,
            neg,
            fast=True,
            progress=lambda s, k, n: seen.append(k),
            cancel=StopAfterTwo(),
            **STAGE1,
        )
    assert seen == [1, 2]


def test_tiny_pipeline_fast_matches_reference_and_cpu_default_is_reference(tiny_models_dir, tiny_pipeline):
    reference = tiny_pipeline.run(object_image(), seed=4, pipeline_type="1024_cascade")[0]
    assert {r.used for r in tiny_pipeline.fast_path_reports.values()} == {False}
    assert tiny_pipeline.fast_path_reports["tex_slat"].reason == "reference path selected"
    fast_pipe = Trellis2ImageTo3DPipeline.from_pretrained(tiny_models_dir, device="cpu", fast=True)
    fast = fast_pipe.run(object_image(), seed=4, pipeline_type="1024_cascade")[0]
    reports = fast_pipe.fast_path_reports
    assert set(reports) == {"sparse_structure", "shape_slat", "shape_slat_hr", "tex_slat"}
    assert all(r.used for r in reports.values())
    assert torch.equal(fast.coords, reference.coords) and torch.equal(fast.faces, reference.faces)
    torch.testing.assert_close(fast.vertices, reference.vertices, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.attrs, reference.attrs, atol=1e-4, rtol=1e-4)
    assert fast_pipe.parameters_on_device() == []


# --- bitwise: the same model outputs give the same trajectory --------------------------------------
class UnorderedAccumulation(TorchDispatchMode):
    """Runs every `index_add` / `scatter_add` in another order at each call, as CUDA's atomic adds
    may (their float32 sums then differ in the last bits from call to call)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("index_add", "index_add_", "scatter_add", "scatter_add_") and args[2].dim() == 1:
            self.calls += 1
            target, dim, index, source = args[:4]
            order = torch.randperm(index.numel(), generator=torch.Generator().manual_seed(self.calls))
            args = (target, dim, index[order], source.index_select(dim, order), *args[4:])
        return func(*args, **kwargs)


@pytest.mark.parametrize(
    ("dtype", "options"),
    [("bfloat16", FastPathOptions(native_norm=False)), ("float32", OPTIONS["nothing but the runner"])],
)
def test_sparse_guidance_rescale_is_bitwise_reproducible(dtype, options):
    """Guidance rescale of a sparse latent (the shape stages): reference runs repeat to the bit,
    and so does the fast path, whatever order accumulations run in (on the H200 the shape stages
    ended 3-4e-3 apart: the per-sample std summed with `index_add_`, i.e. atomics)."""
    model = randomize(SLatFlowModel(resolution=8, in_channels=8, out_channels=8, dtype=dtype, **FLOW), 12)
    noise = sparse_latent(300, 8, seed=13)
    cond, neg = conditions(14)
    sampler = FlowEulerGuidanceIntervalSampler()
    with UnorderedAccumulation():
        runs = [
            sampler.sample(model, noise, cond, neg, fast=fast, keep_trajectory=True, **STAGE2)
            for fast in (False, False, options)
        ]
    assert runs[2].fast_path.used
    for k, steps in enumerate(zip(*(run.pred_x_t for run in runs), strict=True)):
        for other in steps[1:]:
            assert torch.equal(other.feats, steps[0].feats), f"step {k}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sample_std_is_the_per_sample_population_std_in_a_fixed_order(dtype):
    g = torch.Generator().manual_seed(15)
    coords = torch.cat([torch.full((n, 1), b) for b, n in enumerate((70, 0, 50))])
    coords = torch.cat([coords, torch.randint(0, 8, (120, 3), generator=g)], dim=1).int()
    x = SparseTensor((torch.randn(120, 6, generator=g) * 2 + 1).to(dtype), coords, batch_size=3)
    with UnorderedAccumulation():
        first, second = sample_std(x), sample_std(x)
    assert first.shape == (3, 1) and first.dtype == dtype and torch.equal(first, second)
    feats = x.feats.double()
    expected = torch.stack([feats[:70].std(correction=0), feats.new_zeros(()), feats[70:].std(correction=0)])
    torch.testing.assert_close(
        first[:, 0].double(), expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=0
    )
    equal = SparseTensor(x.feats[:100], torch.cat([coords[:50], coords[70:]]).clone(), batch_size=2)
    equal.coords[:50, 0] = 0
    equal.coords[50:, 0] = 1
    torch.testing.assert_close(
        sample_std(equal)[:, 0].double(),
        torch.stack(
            [equal.feats[:50].double().std(correction=0), equal.feats[50:].double().std(correction=0)]
        ),
        rtol=1e-2 if dtype == torch.bfloat16 else 1e-6,
        atol=0,
    )


def test_inexact_batched_pair_runs_as_two_forwards():
    """Where the batched pair gives other bits than two forwards (here: a kernel that depends on the
    row count, injected), the probe at the first guided step keeps the pairs as two forwards, and
    the trajectory is the reference's to the bit; without `exact_pairs` it drifts. (LayerNorm stays
    float32 here: the CPU's bf16 kernel may round otherwise; CUDA's matched on the H200.)"""
    model = randomize(
        SLatFlowModel(resolution=8, in_channels=8, out_channels=8, dtype="bfloat16", **FLOW), 16
    )
    model.blocks[0].mlp.register_forward_hook(lambda module, args, out: out + 1e-2 * out.shape[0])
    noise = sparse_latent(80, 8, seed=17)
    cond, neg = conditions(18)
    sampler = FlowEulerGuidanceIntervalSampler()
    ref = sampler.sample(model, noise, cond, neg, fast=False, **STAGE2)
    options = FastPathOptions(native_norm=False)
    fast = sampler.sample(model, noise, cond, neg, fast=options, **STAGE2)
    assert fast.fast_path.pair_probe == "differs: pairs run as two forwards"
    assert fast.fast_path.calls == {"positive": 5, "negative": 4}
    assert torch.equal(fast.samples.feats, ref.samples.feats)
    unchecked = sampler.sample(
        model, noise, cond, neg, fast=dataclasses.replace(options, exact_pairs=False), **STAGE2
    )
    assert unchecked.fast_path.pair_probe is None and unchecked.fast_path.calls == {"pair": 4, "positive": 1}
    assert not torch.equal(unchecked.samples.feats, ref.samples.feats)
