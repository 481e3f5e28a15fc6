"""Fresnel from TRELLIS.2, end to end on the CPU with the tiny TRELLIS.2 models as the teacher.

`genesis fresnel distill` is killed while it makes the teacher data and resumed; on the way an unreadable
image is skipped and logged and the teacher's child process crashes on one image and is restarted; the
student trains (its loss on the teacher's targets must drop), the card is written and the new model
generates through the API and the CLI. Around it: the teacher's noise, the bundled checkpoint without the
noise input, and the mapping of the teacher's targets into the student's frame.

The tiny teacher's random weights make clouds of small bits that no student learns in a few steps; the
student therefore starts from a tiny Fresnel trained briefly on procedural objects (it makes shapes) and
is fine-tuned for a few steps at a small learning rate, as distillation from a real base would be.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fresnel.checkpoint import (
    BUILTIN_MODEL,
    BUNDLED_DIR,
    CARD_FILE,
    MODELS_SUBDIR,
    init_weights_from,
    load_fresnel,
    model_folders,
)
from fresnel.config import TINY_CONFIG, WEIGHTS_FILE, FresnelConfig
from fresnel.data.batches import grid_centres, make_batch
from fresnel.data.render import TRAIN_CAMERAS, render, sample_cameras
from fresnel.data.scenes import TRAIN_RULES, materials, sample_scenes, signed_distance
from fresnel.distill import frames
from fresnel.distill.run import distill, work_folder
from fresnel.distill.settings import DistillSettings
from fresnel.distill.store import TeacherStore, find_items, item_seeds
from fresnel.distill.targets import STRUCTURE_RESOLUTION, surface_distance
from fresnel.distill.teacher import Trellis2Teacher
from fresnel.network import FresnelNet, structure_noise
from fresnel.training import TrainSettings, export_checkpoint, train
from tools.make_tiny_models import make_tiny_models
from trellis2.models.loading import read_header

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny-student"
CRASH_SIZE = (90, 90)  # the image of this size crashes the teacher's process (`CrashingTeacher`)
STUDENT = dict(seeds_per_image=1, steps=12, batch_size=4, lr=2e-4, warmup_steps=2, holdout_fraction=0.2)


class CrashingTeacher(Trellis2Teacher):
    """The tiny TRELLIS.2 teacher, whose process dies on the image of `CRASH_SIZE` (as a segfault would)."""

    def cut_out(self, image):
        if image.size == CRASH_SIZE:
            os._exit(3)
        return super().cut_out(image)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks only lose from threads on a shared CPU; child processes read OMP_NUM_THREADS."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill-models")
    make_tiny_models(out, seed=0)
    return out


def save_png(rgba: torch.Tensor, path: Path, size: tuple[int, int] | None = None) -> None:
    array = (rgba.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    image = Image.fromarray(array, "RGBA")
    (image.resize(size, Image.Resampling.LANCZOS) if size else image).save(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Procedural objects with transparency: four images, a two-view set, one damaged file and the image that
    crashes the teacher (sorted after the four images, so that the kill lands before it, and before the set)."""
    out = tmp_path_factory.mktemp("distill-images")
    g = torch.Generator().manual_seed(0)
    scenes, cams = sample_scenes(7, g, TRAIN_RULES), sample_cameras(7, g, TRAIN_CAMERAS)
    cams.distance = cams.distance * 1.3
    rgba = render(scenes, cams, 96, g, 24)
    for i, name in enumerate("acef"):
        save_png(rgba[i], out / f"{name}-object.png")
    (out / "pair").mkdir()
    save_png(rgba[4], out / "pair" / "front.png")
    save_png(rgba[5], out / "pair" / "side.png")
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    save_png(rgba[6], out / "g-crash.png", CRASH_SIZE)
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny Fresnel trained for 20 steps on procedural objects: it makes shapes."""
    run = tmp_path_factory.mktemp("tiny-base-run")
    settings = TrainSettings(
        batch_size=4,
        lr=3e-3,
        warmup_steps=3,
        total_steps=20,
        render_resolution=40,
        render_steps=12,
        data_chunk=2,
    )
    train(run, TINY_CONFIG, settings, max_steps=20, log=lambda _: None)
    folder = tmp_path_factory.mktemp("tiny-base") / "tiny-base"
    export_checkpoint(run, folder)
    return folder


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def distilled(tiny_models, images, tiny_base, tmp_path_factory) -> dict:
    """`genesis fresnel distill` killed after two finished inputs, then resumed here (with the crashing teacher)."""
    data = tmp_path_factory.mktemp("distill-data")
    flags = ["--models-dir", str(tiny_models), "--data-dir", str(data), "--device", "cpu"]
    cmd = [
        sys.executable,
        "-m",
        "gui.backend.cli",
        "fresnel",
        "distill",
        "--images",
        str(images),
        "--out",
        NAME,
    ]
    cmd += flags + ["--seeds-per-image", "1", "--steps", "12", "--base", str(tiny_base)]
    store = TeacherStore(work_folder(data, NAME) / "teacher")
    log = open(data / "cli.log", "w")  # noqa: SIM115 - read after the process is gone
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(store.done_items()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    log.close()
    output = (data / "cli.log").read_text()
    child = int(output.split("teacher process started (pid ")[1].split(")")[0])
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the teacher's process outlived the killed command"
    before = {
        item: {p.name: p.stat().st_mtime_ns for p in store.item_dir(item).iterdir()}
        for item, _ in store.done_items()
    }
    lines: list[str] = []
    settings = DistillSettings(**STUDENT, base=tiny_base, device="cpu", teacher=f"{__name__}:CrashingTeacher")
    result = distill(images, NAME, tiny_models, data, settings, resume=True, log=lines.append)
    return {
        "result": result,
        "before": before,
        "output": output,
        "lines": lines,
        "store": store,
        "data": data,
    }


def test_a_killed_run_resumes_without_redoing_finished_inputs(distilled):
    before, store = distilled["before"], distilled["store"]
    assert 2 <= len(before) < 5, f"the run was killed too late to test resuming ({sorted(before)})"
    assert "g-crash.png" not in before, "killed too late: the crashing image was made by the real teacher"
    for item, files in before.items():
        assert {p.name: p.stat().st_mtime_ns for p in store.item_dir(item).iterdir()} == files, item
    assert any(line.startswith(f"resuming: {len(before)} input(s) done") for line in distilled["lines"])
    report = distilled["result"].teacher
    assert report.made == 5 - len(before) and report.done == 5 and report.total == 7


def test_an_unreadable_image_and_a_crash_are_logged_and_skipped(distilled):
    store, report = distilled["store"], distilled["result"].teacher
    reasons = {f["item"]: f["reason"] for f in store.failures()}
    assert set(reasons) == {"broken.png", "g-crash.png"}
    assert reasons["broken.png"].startswith("unusable image:") and "broken.png" in reasons["broken.png"]
    assert reasons["g-crash.png"] == "the teacher process crashed (exit code 3)"
    assert report.failed == 2 and report.restarts == 1
    assert "skipped broken.png" in distilled["output"] or any("broken.png" in x for x in distilled["lines"])


def test_the_teacher_data_holds_compact_targets_per_input_and_seed(distilled):
    store = distilled["store"]
    done = dict(store.done_items())
    assert sorted(done) == ["a-object.png", "c-object.png", "e-object.png", "f-object.png", "pair"]
    assert done["pair"]["views"] == ["front.png", "side.png"]
    for item, record in done.items():
        assert record["seeds"] == item_seeds(item, 1)
        views = np.load(store.item_dir(item) / "views.npz")["crops"]
        assert views.shape == (len(record["views"]), 4, TINY_CONFIG.image_size, TINY_CONFIG.image_size)
        arrays = np.load(store.seed_file(item, record["seeds"][0]))
        assert arrays["latent"].shape == (8, 8, 8, 8) and arrays["latent"].dtype == np.float16
        assert np.unpackbits(arrays["structure"]).sum() == record["stats"][0]["structure_voxels"] > 0
        assert arrays["distance"].shape == (STRUCTURE_RESOLUTION,) * 3 and arrays["distance"].dtype == np.int8
        assert arrays["attr_values"].shape[1] == 6 and arrays["surface_points"].shape[1] == 3
        stats = record["stats"][0]
        assert stats["faces"] > 0 and stats["seconds"] > 0 and stats["resolution"] == 512


def test_the_student_learns_the_teachers_targets(distilled):
    result = distilled["result"]
    before, after = result.loss_before, result.loss_after
    assert after["loss"] < 0.99 * before["loss"], (before, after)
    assert result.extra["state"]["step"] == STUDENT["steps"]


def test_the_model_entry_and_its_card(distilled, tiny_models):
    result = distilled["result"]
    entry = tiny_models / MODELS_SUBDIR / NAME
    assert result.folder == entry and model_folders(tiny_models)[NAME] == entry
    student = load_fresnel(entry)
    assert (student.config.noise_channels, student.config.noise_resolution) == (8, 8)
    card = (entry / CARD_FILE).read_text()
    for text in ("## Data", "## Training", "## Evaluation (held out)", "## Use", "g-crash.png", "Chamfer-L1"):
        assert text in card, text
    assert f"{NAME} (seed's noise, as in the app)" in card and "TRELLIS.2 (the teacher)" in card
    held = result.evaluation["rows"]
    assert held and all(row["item"] in {s.item for s in result.extra["dataset"].held_out} for row in held)
    assert result.evaluation["teacher_seconds"] > 0


def test_the_new_model_generates_through_the_api_and_the_cli(distilled, tiny_models, images, tmp_path):
    from gui.backend import cli
    from gui.backend.app import create_app
    from gui.backend.config import Settings
    from gui.backend.worker_process import EngineSpec

    spec = EngineSpec(converter="gui.backend.export:vertex_colored_mesh")
    app = create_app(Settings(models_dir=tiny_models, data_dir=tmp_path / "data"), spec)
    image = (images / "a-object.png").read_bytes()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        field = client.get("/api/config").json()["engines"]["fresnel"]["params"]["fresnel_model"]
        assert field["default"] == BUILTIN_MODEL and field["choices"] == [BUILTIN_MODEL, NAME]
        params = json.dumps({"fresnel_model": NAME, "seed": 5})
        r = client.post(
            "/api/generate/fast", files={"image": ("a.png", image, "image/png")}, data={"params": params}
        )
        assert r.status_code == 202, r.text
        job_id, deadline = r.json()["job_id"], time.monotonic() + 120
        while (job := client.get(f"/api/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "succeeded", job
        assert job["params"]["fresnel_model"] == NAME
        assert client.get(job["result"]["files"]["model.glb"]).content[:4] == b"glTF"
        bad = client.post(
            "/api/generate/fast",
            files={"image": ("a.png", image, "image/png")},
            data={"params": json.dumps({"fresnel_model": "no-such-model"})},
        )
        assert bad.status_code == 422 and NAME in bad.text
    out = tmp_path / "cli.glb"
    argv = ["generate", str(images / "a-object.png"), "--fresnel-model", NAME, "--out", str(out)]
    argv += ["--texture-size", "512", "--decimation-target", "10000", "--no-remesh"]
    argv += ["--models-dir", str(tiny_models), "--data-dir", str(tmp_path / "cli-data"), "--device", "cpu"]
    assert cli.main(argv) == 0 and out.read_bytes()[:4] == b"glTF"


# -- the pieces --------------------------------------------------------------------------------------------------
def test_the_student_gets_the_noise_trellis2_starts_from(tiny_models, images):
    teacher = Trellis2Teacher(tiny_models, "512", "cpu")
    sampler = teacher.pipeline.samplers["sparse_structure_sampler"]
    seen = []

    class Recording:
        def sample(self, model, noise, *args, **kwargs):
            seen.append(noise.clone())
            return sampler.sample(model, noise, *args, **kwargs)

    teacher.pipeline.samplers["sparse_structure_sampler"] = Recording()
    run = teacher.run([teacher.cut_out(Image.open(images / "a-object.png"))], seed=1234)
    config = FresnelConfig(**{**TINY_CONFIG.__dict__, "noise_channels": 8, "noise_resolution": 8})
    assert torch.equal(seen[0][0], structure_noise([1234], config)[0])
    assert run.latent.shape == (8, 8, 8, 8) and run.logits.shape == (64, 64, 64)


def test_the_bundled_checkpoint_has_no_noise_input_and_a_student_starts_as_it():
    bundled = load_fresnel(BUNDLED_DIR)
    assert bundled.config.noise_channels == 0 and bundled.noise_proj is None
    assert set(bundled.state_dict()) == set(read_header(BUNDLED_DIR / WEIGHTS_FILE))  # loaded strictly
    config = FresnelConfig(**{**bundled.config.__dict__, "noise_channels": 8, "noise_resolution": 16})
    student = FresnelNet(config).eval()
    assert init_weights_from(student, BUNDLED_DIR) == ["noise_proj.weight"]
    images = torch.rand(1, 4, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = bundled(images)
        noisy = student(images, structure_noise([7], config))
    assert torch.equal(plain.occupancy_logits, noisy.occupancy_logits)
    assert torch.equal(plain.attribute_logits, noisy.attribute_logits)
    with pytest.raises(ValueError, match="no noise input"):
        bundled(images, structure_noise([7], config))


def test_teacher_targets_map_into_the_students_frame():
    """Procedural objects stand in for the teacher: their world frame is TRELLIS.2's object frame, and
    `make_batch` gives the true targets in the student's frame, which the mapping must reproduce."""
    g = torch.Generator().manual_seed(3)
    grid, teacher = 32, STRUCTURE_RESOLUTION
    batch = make_batch(4, g, grid=grid, image_size=64, render_resolution=96, render_steps=24)
    world = grid_centres(teacher)
    exact, fitted, elevation_errors = [], [], []
    for i in range(4):
        scene = batch.scenes.select(torch.tensor([i]))
        distance = (signed_distance(scene, world[None])[0] * teacher).reshape((teacher,) * 3)
        colour = materials(scene, world[None])[0][:, :3].clamp(0, 1).T.reshape(3, *(teacher,) * 3) ** (
            1 / 2.2
        )
        to_world = batch.to_world[i]
        scale = float(1 / to_world[:3, :3].norm(dim=0)[0])
        rotation = (to_world[:3, :3] * scale).T
        true_pose = frames.Pose(
            float(batch.cameras.yaw[i]),
            float(batch.cameras.elevation[i]),
            scale,
            tuple((rotation @ to_world[:3, 3]).tolist()),
        )
        truth = batch.distance[i] < 0
        fitted_pose = frames.fit_pose(batch.images[i], distance < 0, colour)
        for pose, scores in ((true_pose, exact), (fitted_pose, fitted)):
            _, mapped, _ = frames.student_targets(
                distance[None], colour[None].repeat(1, 2, 1, 1, 1), frames.PoseBatch.of([pose]), grid
            )
            inside = mapped[0] < 0
            scores.append(float((inside & truth).sum() / (inside | truth).sum()))
        elevation_errors.append(abs(math.degrees(fitted_pose.elevation - true_pose.elevation)))
    assert min(exact) > 0.95, exact  # the resampling: frames, axes and units are the student's
    assert sum(fitted) / len(fitted) > 0.7 and min(fitted) > 0.5, fitted  # the pose found from the image
    assert sorted(elevation_errors)[-2] < 10, elevation_errors


def test_the_students_noise_follows_the_pose():
    noise = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    same = frames.PoseBatch.of([frames.Pose(0.0, 0.0, 1.0, (0.0, 0.0, 0.0))])
    assert torch.equal(frames.student_noise(noise, same), noise)
    half = frames.PoseBatch.of(
        [frames.Pose(math.pi, 0.0, 1.0, (0.0, 0.0, 0.0))]
    )  # the camera behind: x, y flip
    assert torch.equal(frames.student_noise(noise, half), noise.flip(2, 3))


def test_the_signed_distance_of_a_closed_and_an_open_surface():
    resolution, radius = 256, 0.3
    k = torch.arange(150_000) + 0.5  # a Fibonacci sphere, dense enough to touch every surface voxel
    z = 1 - 2 * k / k.numel()
    ring, turn = (1 - z**2).sqrt(), math.pi * (3 - math.sqrt(5)) * k
    points = radius * torch.stack([ring * torch.cos(turn), ring * torch.sin(turn), z], -1)
    cells = torch.unique(((points + 0.5) * resolution).floor().long(), dim=0)
    distance = torch.from_numpy(surface_distance(cells, resolution))
    true = ((grid_centres(64).norm(dim=1) - radius) * 64).reshape(64, 64, 64)
    near = true.abs() < 3
    assert (distance[near] - true[near]).abs().mean() < 0.5
    assert bool((distance[true < -1] < 0).all()) and bool((distance[true > 1] > 0).all())
    bowl = cells[(cells[:, 2].float() + 0.5) / resolution - 0.5 < 0.2]  # open at the top: it encloses nothing
    opened = torch.from_numpy(surface_distance(bowl, resolution))
    assert bool((opened >= 0).all())
    assert bool((frames.with_body(opened)[opened < 0.3] < 0).all())


def test_inputs_are_images_and_folders_of_views(tmp_path):
    for name in ("b.png", "a b.png", "a_b.png", "c.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "2.png").write_bytes(b"x")
    (tmp_path / "set" / "1.webp").write_bytes(b"x")
    items = {item.id: [v.name for v in item.views] for item in find_items(tmp_path)}
    assert items == {
        "a_b.png": ["a b.png"],
        "a_b.png-2": ["a_b.png"],
        "b.png": ["b.png"],
        "c.JPG": ["c.JPG"],
        "set": ["1.webp", "2.png"],
    }
    assert item_seeds("x", 3) == item_seeds("x", 3) and len(set(item_seeds("x", 3) + item_seeds("y", 3))) == 6
