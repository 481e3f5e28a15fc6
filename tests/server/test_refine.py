"""Draft to final on the tiny models: a Fast job keeps its structure, and Refine runs TRELLIS.2 from exactly
those voxels with the draft's seed, the same result every time."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from gui.backend.engines import EngineManager, default_engines
from gui.backend.export import vertex_colored_mesh
from gui.backend.files import JobFolders
from gui.backend.generation import GENERATION_FILE
from gui.backend.images import store_inputs
from gui.backend.params import FastParams, GenerateParams
from gui.backend.refine import STRUCTURE_FILE, create_refine_job, load_structure, refine_params
from gui.backend.store import JobStore
from gui.backend.worker import JobWorker
from trellis2.pipelines import Trellis2ImageTo3DPipeline
from trellis2.pipelines.sampling_stages import structure_coords

STEPS = {"steps": 2}
QUICK = {"texture_size": 512, "decimation_target": 10_000, "remesh": False}


@pytest.fixture()
def worker(tiny_models, tmp_path):
    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    engines = EngineManager(default_engines(tiny_models, "cpu"))
    return JobWorker(store, folders, engines, device="cpu", converter=vertex_colored_mesh)


def test_refine_uses_the_drafts_voxels_and_is_deterministic(worker, object_png, monkeypatch):
    image = Image.open(io.BytesIO(object_png))
    draft = worker.store.create(
        "fresnel",
        FastParams(seed=11, name="mug", **QUICK).model_dump(),
        store_inputs(worker.folders, "a" * 32, [image]),
        job_id="a" * 32,
    )
    draft = worker.run_job(draft)
    assert draft.state == "succeeded", draft.error_message
    structure = load_structure(worker.folders, draft.id)
    assert structure is not None and structure.dtype == torch.bool and structure.any()

    seen: list[torch.Tensor] = []
    original = Trellis2ImageTo3DPipeline.sample_shape_slat

    def spy(self, cond, flow_key, coords, *args, **kwargs):
        seen.append(coords.clone())
        return original(self, cond, flow_key, coords, *args, **kwargs)

    def no_stage_one(*args, **kwargs):
        raise AssertionError("a refine job must not sample its own structure")

    monkeypatch.setattr(Trellis2ImageTo3DPipeline, "sample_shape_slat", spy)
    monkeypatch.setattr(Trellis2ImageTo3DPipeline, "sample_sparse_structure", no_stage_one)
    overrides = {
        "pipeline_type": "512",
        **QUICK,
        **{f"{s}_sampler_params": STEPS for s in ("shape_slat", "tex_slat")},
    }
    results = []
    for _ in range(2):
        params = GenerateParams.model_validate(refine_params(draft, overrides))
        assert params.seed == 11 and params.name == "mug" and params.draft_job == draft.id
        job = worker.run_job(create_refine_job(worker.store, worker.folders, draft, params.model_dump()))
        assert job.state == "succeeded", job.error_message
        assert torch.equal(load_structure(worker.folders, job.id), structure)
        with np.load(worker.folders.path(job.id, GENERATION_FILE)) as data:
            results.append({k: data[k] for k in data.files})
    expected = structure_coords(structure[None, None], 32)
    assert len(seen) == 2 and all(torch.equal(coords, expected) for coords in seen)
    assert results[0].keys() == results[1].keys()
    assert all(np.array_equal(results[0][k], results[1][k]) for k in results[0])
    assert worker.folders.path(draft.id, STRUCTURE_FILE).is_file()
