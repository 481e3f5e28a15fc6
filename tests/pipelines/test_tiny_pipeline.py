"""The whole pipeline on the tiny models folder: every type, determinism, preprocessing routing,
progress, cancellation, low-VRAM bookkeeping and missing models."""

from __future__ import annotations

import shutil

import pytest
import torch

from o_voxel.asset import MeshWithVoxel
from tests.pipelines.images import object_image
from trellis2.pipelines import (
    JobCancelled,
    ModelNotFoundError,
    Trellis2ImageTo3DPipeline,
    check_models,
)

EXPECTED_RESOLUTION = {"512": 512, "1024": 1024, "1024_cascade": 1024, "1536_cascade": 1536}


def _check_asset(asset: MeshWithVoxel, resolution: int) -> None:
    assert asset.vertices.dtype == torch.float32 and asset.vertices.shape[1] == 3
    assert asset.faces.dtype == torch.int32 and asset.faces.shape[1] == 3
    assert asset.faces.shape[0] > 0 and int(asset.faces.max()) < asset.vertices.shape[0]
    assert asset.coords.dtype == torch.int32 and asset.coords.shape[1] == 3
    assert asset.attrs.shape == (asset.coords.shape[0], 6) and asset.attrs.dtype == torch.float32
    assert asset.voxel_size == 1.0 / resolution and asset.resolution == resolution
    assert int(asset.coords.min()) >= 0 and int(asset.coords.max()) < resolution
    assert torch.equal(asset.origin, torch.tensor([-0.5, -0.5, -0.5]))
    assert set(asset.layout) == {"base_color", "metallic", "roughness", "alpha"}


class ProgressLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def __call__(self, stage: str, step: int, total: int) -> None:
        self.events.append((stage, step, total))

    def check_monotonic_and_complete(self) -> None:
        per_stage: dict[str, list[tuple[int, int]]] = {}
        for stage, step, total in self.events:
            per_stage.setdefault(stage, []).append((step, total))
        for stage, steps in per_stage.items():
            assert [s for s, _ in steps] == list(range(1, len(steps) + 1)), (stage, steps)
            assert steps[-1][0] == steps[-1][1], f"{stage} stopped at {steps[-1]}"


@pytest.mark.parametrize("pipeline_type", ["512", "1024", "1024_cascade", "1536_cascade"])
def test_every_pipeline_type_runs(tiny_pipeline, pipeline_type):
    log = ProgressLog()
    assets = tiny_pipeline.run(object_image(), seed=3, pipeline_type=pipeline_type, progress=log)
    assert len(assets) == 1
    _check_asset(assets[0], EXPECTED_RESOLUTION[pipeline_type])
    log.check_monotonic_and_complete()
    stages = [stage for stage, _, _ in log.events]
    expected = ["preprocess", "conditioning", "sparse_structure", "shape_slat"]
    expected += ["shape_slat_hr"] if "cascade" in pipeline_type else []
    expected += ["tex_slat", "decode"]
    assert list(dict.fromkeys(stages)) == expected
    assert tiny_pipeline.parameters_on_device() == []


def test_token_budget_lowers_the_1536_cascade_resolution(tiny_pipeline):
    assets = tiny_pipeline.run(object_image(), seed=3, pipeline_type="1536_cascade", max_num_tokens=1)
    _check_asset(assets[0], 1024)


def test_same_seed_is_bit_identical_and_another_seed_differs(tiny_pipeline):
    a = tiny_pipeline.run(object_image(), seed=7, pipeline_type="512")[0]
    b = tiny_pipeline.run(object_image(), seed=7, pipeline_type="512")[0]
    c = tiny_pipeline.run(object_image(), seed=8, pipeline_type="512")[0]
    for name in ("vertices", "faces", "coords", "attrs"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.coords.shape != c.coords.shape or not torch.equal(a.attrs, c.attrs)


def test_transparent_rgba_skips_background_removal_and_opaque_uses_it(tiny_pipeline, monkeypatch):
    calls = []
    real = tiny_pipeline.rembg_model

    def spy():
        calls.append(1)
        return real()

    monkeypatch.setattr(tiny_pipeline, "rembg_model", spy)
    tiny_pipeline.preprocess_image(object_image(opaque=False))
    assert calls == []
    out = tiny_pipeline.preprocess_image(object_image(opaque=True))
    assert calls == [1]
    assert out.mode == "RGB" and out.size[0] == out.size[1]


def test_opaque_image_runs_end_to_end(tiny_pipeline):
    _check_asset(tiny_pipeline.run(object_image(opaque=True), seed=1, pipeline_type="512")[0], 512)


class CancelAt:
    """Sets itself when the progress callback reports `(stage, step)`."""

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step, self.flag, self.log = stage, step, False, ProgressLog()

    def progress(self, stage: str, step: int, total: int) -> None:
        self.log(stage, step, total)
        if (stage, step) == (self.stage, self.step):
            self.flag = True

    def is_set(self) -> bool:
        return self.flag


@pytest.mark.parametrize("stage,step", [("sparse_structure", 1), ("shape_slat_hr", 2), ("decode", 1)])
def test_cancel_stops_within_one_step(tiny_pipeline, stage, step):
    cancel = CancelAt(stage, step)
    with pytest.raises(JobCancelled):
        tiny_pipeline.run(
            object_image(), seed=2, pipeline_type="1024_cascade", progress=cancel.progress, cancel=cancel
        )
    assert cancel.log.events[-1][:2] == (stage, step)  # nothing ran after the flag was set
    assert tiny_pipeline.parameters_on_device() == []


def test_bad_run_arguments_are_clear_errors(tiny_pipeline):
    with pytest.raises(ValueError, match="pipeline_type"):
        tiny_pipeline.run(object_image(), pipeline_type="2048")
    with pytest.raises(ValueError, match="unknown sampler parameter"):
        tiny_pipeline.run(object_image(), pipeline_type="512", shape_slat_sampler_params={"stepz": 3})
    with pytest.raises(ValueError, match="steps"):
        tiny_pipeline.run(object_image(), pipeline_type="512", tex_slat_sampler_params={"steps": 0})
    with pytest.raises(ValueError, match="seed"):
        tiny_pipeline.run(object_image(), seed=-1, pipeline_type="512")


def test_sampler_params_override_pipeline_json(tiny_pipeline):
    log = ProgressLog()
    tiny_pipeline.run(
        object_image(),
        seed=3,
        pipeline_type="512",
        progress=log,
        sparse_structure_sampler_params={"steps": 1},
        tex_slat_sampler_params={"steps": 4},
    )
    totals = {stage: total for stage, _, total in log.events}
    assert totals["sparse_structure"] == 1 and totals["tex_slat"] == 4 and totals["shape_slat"] == 3


def test_missing_checkpoint_names_it_and_the_download_command(tiny_models_dir, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(tiny_models_dir, broken)
    (broken / "microsoft/TRELLIS.2-4B/ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16.safetensors").unlink()
    shutil.rmtree(broken / "facebook")
    hint = "Download it with: app-cli fetch {repo_id}"
    pipe = Trellis2ImageTo3DPipeline.from_pretrained(broken, device="cpu", missing_model_hint=hint)
    with pytest.raises(ModelNotFoundError) as error:
        pipe.run(object_image(), pipeline_type="1024_cascade")
    message = str(error.value)
    assert "slat_flow_img2shape_dit_1_3B_1024_bf16" in message
    assert message.endswith("Download it with: app-cli fetch microsoft/TRELLIS.2-4B")
    with pytest.raises(ModelNotFoundError) as error:
        pipe.run(object_image(), pipeline_type="512")
    message = str(error.value)
    assert "facebook/dinov3-vitl16-pretrain-lvd1689m" in message and "gated" in message
    assert message.endswith("Download it with: app-cli fetch facebook/dinov3-vitl16-pretrain-lvd1689m")
    status = {model_id: (present, reason) for model_id, present, reason in check_models(broken, hint)}
    assert status["microsoft/TRELLIS.2-4B"][0] is False
    assert "slat_flow_img2shape_dit_1_3B_1024_bf16" in status["microsoft/TRELLIS.2-4B"][1]
    assert status["microsoft/TRELLIS.2-4B"][1].endswith("app-cli fetch microsoft/TRELLIS.2-4B")
    assert status["microsoft/TRELLIS-image-large"] == (True, "ok")
    assert status["facebook/dinov3-vitl16-pretrain-lvd1689m"][0] is False
    assert all(present for _, present, _ in check_models(tiny_models_dir))


def test_models_dir_in_hugging_face_cache_layout(tiny_models_dir, tmp_path):
    cache = tmp_path / "hf"
    for org, name in [
        ("microsoft", "TRELLIS.2-4B"),
        ("microsoft", "TRELLIS-image-large"),
        ("facebook", "dinov3-vitl16-pretrain-lvd1689m"),
        ("briaai", "RMBG-2.0"),
    ]:
        repo = cache / f"models--{org}--{name}"
        shutil.copytree(tiny_models_dir / org / name, repo / "snapshots" / "abc123")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("abc123")
    assert all(present for _, present, _ in check_models(cache))
    pipe = Trellis2ImageTo3DPipeline.from_pretrained(cache, device="cpu")
    pipe.load_models("512")
    assert set(pipe.models.loaded()) == {*pipe.required_models("512"), "image_cond_model"}
    assert pipe.checkpoint_path("sparse_structure_decoder").parts[-4:-2] == ("snapshots", "abc123")
    _check_asset(pipe.run(object_image(), seed=5, pipeline_type="512")[0], 512)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_and_leaves_no_parameter_on_the_gpu(tiny_models_dir, tiny_pipeline, monkeypatch):
    gpu = Trellis2ImageTo3DPipeline.from_pretrained(tiny_models_dir, device="cuda")
    cpu_asset = tiny_pipeline.run(object_image(), seed=6, pipeline_type="1024_cascade")[0]
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    asset = gpu.run(object_image(), seed=6, pipeline_type="1024_cascade")[0]
    assert gpu.parameters_on_device() == []
    assert asset.vertices.device.type == "cuda"
    _check_asset(asset.to("cpu"), 1024)
    if torch.equal(asset.coords.cpu(), cpu_asset.coords):  # binarised decisions may flip across devices
        torch.testing.assert_close(asset.attrs.cpu(), cpu_asset.attrs, atol=1e-3, rtol=1e-3)
    cancel = CancelAt("shape_slat", 1)
    with pytest.raises(JobCancelled):
        gpu.run(object_image(), seed=6, pipeline_type="1024_cascade", progress=cancel.progress, cancel=cancel)
    assert gpu.parameters_on_device() == []
    assert all(t.is_pinned() for m in gpu._models.values() for t in m.parameters())


def test_missing_model_without_a_hint_names_only_the_model_and_the_folder(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        Trellis2ImageTo3DPipeline.from_pretrained(tmp_path, device="cpu")
    message = str(error.value)
    assert (
        message
        == f"model 'microsoft/TRELLIS.2-4B' was not found in the models folder {tmp_path} (no pipeline.json)."
    )
    assert error.value.repo_id == "microsoft/TRELLIS.2-4B" and error.value.hint == ""
