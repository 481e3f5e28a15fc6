"""Fast in-process tests of the server's parts: parameters, progress/ETA, store, folders, generation, worker,
engine manager, model verification."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from pydantic import ValidationError

from gui.backend.engines.base import EngineManager
from gui.backend.files import JobFolders
from gui.backend.generation import load_generation, save_generation
from gui.backend.images import store_inputs
from gui.backend.models_download import git_blob_sha1, verify
from gui.backend.params import ExportRequest, GenerateParams, MultiViewParams
from gui.backend.progress import ProgressTracker
from gui.backend.store import FAILED, QUEUED, RUNNING, JobStore
from gui.backend.timings import ExpectedCurve, compact
from gui.backend.worker import JobWorker, classify_failure

from .fake_engine import OOM_SEED, FakeEngine, cube_mesh, fake_engines


def test_parameters_follow_the_official_names_defaults_and_ranges():
    p = GenerateParams()
    assert (p.seed, p.pipeline_type, p.texture_size, p.decimation_target, p.remesh) == (
        0,
        "1024_cascade",
        2048,
        500_000,
        True,
    )
    assert p.shape_slat_sampler_params.overrides() == {}
    p = GenerateParams.model_validate({"tex_slat_sampler_params": {"steps": 50, "rescale_t": 6}})
    assert p.tex_slat_sampler_params.overrides() == {"steps": 50, "rescale_t": 6}
    bad = [
        {"seed": 2**31},
        {"sparse_structure_sampler_params": {"steps": 0}},
        {"shape_slat_sampler_params": {"guidance_strength": 10.5}},
        {"shape_slat_sampler_params": {"guidance_rescale": 1.5}},
        {"tex_slat_sampler_params": {"rescale_t": 0.5}},
        {"decimation_target": 9_999},
        {"decimation_target": 2_000_001},
        {"texture_size": 511},
        {"pipeline_type": "256"},
        {"unknown": 1},
    ]
    for case in bad:
        with pytest.raises(ValidationError):
            GenerateParams.model_validate(case)
    assert MultiViewParams(mode="multidiffusion").mode == "multidiffusion"
    assert ExportRequest().format == "glb"


def test_progress_fraction_is_monotonic_and_eta_comes_from_step_times():
    tracker = ProgressTracker([("a", 1.0), ("b", 3.0)])
    t0 = time.monotonic()
    first = tracker.update("a", 0, 4)
    assert first.eta_s is None and first.eta_basis == "first_run", "no ETA before some work was timed"
    time.sleep(0.02)
    snap = tracker.update("a", 4, 4)
    elapsed = time.monotonic() - t0
    # a quarter of the work took `elapsed`, so the remaining three quarters take three times as long
    assert snap.fraction == pytest.approx(0.25) and 3 * 0.02 <= snap.eta_s <= 3 * elapsed
    assert tracker.update("b", 3, 3).fraction == pytest.approx(0.999)
    assert tracker.update("a", 0, 4).fraction == pytest.approx(0.999), "never backwards"
    assert ProgressTracker().update("unplanned", 1, 2).fraction == pytest.approx(0.5)


def test_expected_curve_is_the_median_of_past_timelines():
    runs = [
        [(0.0, 0.0), (0.5, 2.0), (1.0, 10.0)],
        [(0.0, 0.0), (0.5, 4.0), (1.0, 12.0)],
        [(0.0, 0.0), (1.0, 30.0)],
    ]
    curve = ExpectedCurve.from_timelines(runs)
    assert curve.runs == 3 and curve.total_s == pytest.approx(12.0)
    assert curve.seconds_at(0.5) == pytest.approx(4.0)  # median of 2, 4 and 15 (the third run, interpolated)
    assert curve.next_point_after(0.5) == 1.0 and curve.next_point_after(0.2) == 0.5
    assert curve.next_point_after(0.4999996) == 1.0, "a stored (rounded) fraction is the same report"
    assert ExpectedCurve.from_timelines([]) is None and ExpectedCurve.from_timelines([[(0.0, 0.0)]]) is None
    long = [(i / 999, i * 0.1) for i in range(1000)]
    short = compact(long, 64)
    assert len(short) == 64 and short[0] == (0.0, 0.0) and short[-1] == (1.0, pytest.approx(99.9))


def test_progress_with_history_follows_time_and_moves_between_reports(monkeypatch):
    """A plan whose last stage (the export) is cheap on paper but took 80 % of the time before: the bar follows
    the time, moves on between reports without passing the next one, and the time left comes from history."""
    import gui.backend.progress as progress_module

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    plan = [("loading", 1.0), ("sampling", 4.0), ("export", 1.0)]
    history = [[(1 / 6, 0.0), (5 / 6, 2.0), (1.0, 10.0)]]  # sampling took 2 s, the export 8 s
    tracker = ProgressTracker(plan, ExpectedCurve.from_timelines(history))
    assert tracker.update("loading", 0, 1).eta_basis == "history"
    clock[0] += 30.0  # a cold load: not counted
    tracker.update("loading", 1, 1)
    tracker.update("sampling", 0, 4)
    clock[0] += 2.0
    snap = tracker.update("export", 0, 1)  # sampling done in 2 s, as before
    assert snap.fraction == pytest.approx(0.2) and snap.eta_s == pytest.approx(8.0)
    clock[0] += 4.0  # half-way through the export, with no report
    snap = tracker.current()
    assert snap.fraction == pytest.approx(0.6, abs=0.01) and snap.eta_s == pytest.approx(4.0, abs=0.1)
    clock[0] += 20.0  # far slower than before: the bar waits at the next report, the time left does not go up
    snap = tracker.current()
    assert snap.fraction == pytest.approx(0.999) and snap.eta_s == pytest.approx(0.0)
    timeline = tracker.finish()
    assert timeline[0] == (pytest.approx(1 / 6), 0.0) and timeline[-1] == (1.0, pytest.approx(26.0))


def test_a_job_learns_from_the_last_one_of_its_kind(tmp_path):
    """The worker keeps each finished job's timeline under its kind; the next job of that kind reports its
    time left from history, a job of another kind (another texture size) is a first run."""
    worker, queue = make_worker(tmp_path)
    seen: list[str] = []

    def run(texture_size: int) -> None:
        done = worker.run_job(
            queue(texture_size=texture_size), on_progress=lambda s: seen.append(s.eta_basis)
        )
        assert done.state == "succeeded"

    run(1024)
    assert set(seen) == {"first_run"}
    seen.clear()
    run(1024)
    assert set(seen) == {"history"}
    seen.clear()
    run(2048)
    assert set(seen) == {"first_run"}


def test_store_recovers_running_jobs_as_failed_and_keeps_queued_ones(tmp_path):
    store = JobStore(tmp_path)
    a = store.create("trellis2", {}, ["input_0.png"])
    b = store.create("trellis2", {}, ["input_0.png"])
    assert store.next_queued().id == a.id and store.start(a.id)
    assert not store.start(a.id), "a job starts only once"
    reopened = JobStore(tmp_path)
    assert reopened.recover_after_crash() == [a.id]
    assert reopened.get(a.id).state == FAILED and reopened.get(a.id).error_code == "interrupted"
    assert reopened.get(b.id).state == QUEUED
    assert [j.id for j in reopened.list()] == [b.id, a.id], "newest first"
    journal = reopened._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_job_folders_refuse_client_strings_and_write_atomically(tmp_path):
    folders = JobFolders(tmp_path)
    for bad_id in ("../x", "abc", "A" * 32, "0" * 31 + "/"):
        with pytest.raises(ValueError):
            folders.folder(bad_id)
    job_id = "0123456789abcdef0123456789abcdef"
    for bad_name in ("../genesis.db", ".hidden", "a/b", "..", ""):
        with pytest.raises(ValueError):
            folders.path(job_id, bad_name)
    with pytest.raises(RuntimeError), folders.atomic(job_id, "model.glb") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert not folders.path(job_id, "model.glb").exists()
    assert list(folders.folder(job_id).iterdir()) == [], "no temporary file left behind"


def test_generation_round_trip(tmp_path):
    mesh = cube_mesh()
    save_generation([mesh], tmp_path / "g.npz")
    (back,) = load_generation(tmp_path / "g.npz")
    for name in ("vertices", "faces", "coords", "attrs", "origin"):
        assert torch.equal(getattr(back, name), getattr(mesh, name).to(getattr(back, name).dtype))
    assert back.voxel_size == mesh.voxel_size and back.layout == mesh.layout


def make_worker(tmp_path, engines=None):
    from PIL import Image

    from gui.backend.export import vertex_colored_mesh

    store, folders = JobStore(tmp_path), JobFolders(tmp_path)
    manager = EngineManager(engines or fake_engines(steps=3, step_s=0.0), idle_unload_s=0.0)
    worker = JobWorker(store, folders, manager, converter=vertex_colored_mesh)

    def queue(engine="trellis2", **params):
        job_id = f"{len(store.list()):032x}"
        names = store_inputs(folders, job_id, [Image.new("RGBA", (32, 32), (255, 0, 0, 255))])
        return store.create(engine, GenerateParams(**params).model_dump(), names, job_id=job_id)

    return worker, queue


def test_worker_turns_oom_into_advice_unloads_and_carries_on(tmp_path):
    worker, queue = make_worker(tmp_path)
    job = worker.run_job(queue(seed=OOM_SEED))
    assert (
        job.state == FAILED and job.error_code == "out_of_memory" and "512" in job.to_api()["error"]["hint"]
    )
    assert worker.engines.active is None, "models are unloaded after an out-of-memory error"
    assert worker.run_job(queue(seed=1)).state == "succeeded"


def test_engine_manager_loads_lazily_swaps_engines_and_unloads_when_idle(tmp_path):
    engines = fake_engines(steps=1, step_s=0.0)
    worker, queue = make_worker(tmp_path, engines)
    assert not any(e.loaded for e in engines.values()), "nothing loads before the first job"
    worker.run_job(queue("trellis2"))
    assert engines["trellis2"].loaded
    worker.run_job(queue("multiview"))
    assert engines["multiview"].loaded and not engines["trellis2"].loaded
    assert worker.engines.unload_idle() and not engines["multiview"].loaded


def test_cancel_before_start_and_during_run(tmp_path):
    slow = {"trellis2": FakeEngine("trellis2", steps=200, step_s=0.01)}
    worker, queue = make_worker(tmp_path, slow)
    job = queue()
    assert worker.cancel(job.id) and worker.store.get(job.id).state == "cancelled"
    worker.start()
    try:
        job = queue()
        worker.notify()
        deadline = time.monotonic() + 10
        while worker.store.get(job.id).state != RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.cancel(job.id)
        while worker.store.get(job.id).state == RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.store.get(job.id).state == "cancelled"
    finally:
        worker.stop()


def test_failures_are_classified_without_stack_traces():
    assert classify_failure(torch.OutOfMemoryError("CUDA out of memory")).code == "out_of_memory"
    assert classify_failure(RuntimeError("CUDA error: out of memory")).code == "out_of_memory"
    assert classify_failure(KeyError("x")).code == "engine_error"


def test_model_verification_detects_changed_files(tmp_path):
    data = b"weights" * 100
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "b.json").write_bytes(b"{}")
    sha1 = hashlib.sha1(b"blob 2\0{}").hexdigest()
    assert git_blob_sha1(tmp_path / "b.json") == sha1
    expected = {"a.bin": ("sha256", hashlib.sha256(data).hexdigest()), "b.json": ("sha1", sha1)}
    assert verify(tmp_path, expected) == []
    (tmp_path / "a.bin").write_bytes(data + b"!")
    assert verify(tmp_path, {**expected, "c": ("sha1", "0")}) == ["a.bin (checksum mismatch)", "c (missing)"]


def test_the_engine_summary_says_what_can_run_in_one_line():
    from gui.backend.engines import EngineStatus, engine_summary

    statuses = {
        "trellis2": EngineStatus(
            False, "Models missing in /m: microsoft/TRELLIS.2-4B. Run genesis models download."
        ),
        "multiview": EngineStatus(False, "Models missing in /m: x"),
        "fresnel": EngineStatus(True, ""),
    }
    assert engine_summary(statuses, "cpu") == (
        "Image: Models missing · Multi-view: Models missing · Fast ready · CPU (slow)"
    )
    assert engine_summary({"fresnel": EngineStatus(True, "")}, "cuda (NVIDIA H200)") == (
        "Fast ready · cuda (NVIDIA H200)"
    )


def test_the_export_process_is_replaced_when_our_side_fails_mid_export(tmp_path):
    """A failure on the worker's side (here its progress callback) ends the export in flight: the next export
    gets a fresh process and its own answer, never the abandoned one's."""
    from gui.backend.export_process import ExportProcess, ExportTask
    from gui.backend.params import ExportParams

    generation = tmp_path / "generation.npz"
    save_generation([cube_mesh()], generation)
    exporter = ExportProcess("cpu", "gui.backend.export:vertex_colored_mesh")
    try:

        def broken(stage, step, total):
            raise RuntimeError("the database is gone")

        with pytest.raises(RuntimeError, match="database"):
            exporter.run(
                ExportTask(generation, ExportParams(), "glb", tmp_path / "a.glb"), broken, lambda: False
            )
        fresh = exporter.pid  # started when the broken export was ended
        stats = exporter.run(
            ExportTask(generation, ExportParams(), "glb", tmp_path / "b.glb"), None, lambda: False
        )
        assert exporter.pid == fresh and stats["faces"] == 12 and (tmp_path / "b.glb").stat().st_size > 0
        assert not (tmp_path / "a.glb").exists()
    finally:
        exporter.close()
