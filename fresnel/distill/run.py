"""`distill`: teacher data, training, evaluation and the models-folder entry, each step resumable.

    <data>/distill/<name>/teacher/   the teacher data (`store`)
    <data>/distill/<name>/run/       the training run (`fresnel.training`: state.pt, loss.json, loss.png)
    <models>/fresnel/<name>/         the result: config.json, model.safetensors, card.md

A second call with `resume=True` goes on where the first stopped: finished teacher runs are kept, the
training continues from its last snapshot up to `steps`, and the evaluation and the entry are made again.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..checkpoint import (
    BUNDLED_DIR,
    CARD_FILE,
    MODELS_SUBDIR,
    check_model_name,
    init_weights_from,
    load_fresnel,
    save_fresnel,
)
from ..network import FresnelNet
from ..training import TrainSettings, train
from .dataset import TeacherDataset
from .evaluate import card_markdown, evaluate_students, evaluation_table
from .settings import DistillSettings
from .teacher_data import TeacherProgress, TeacherReport, TeacherSettings, write_teacher_data
from .training import TeacherSteps, mean_loss, student_config

LOSS_SAMPLES = 64  # training samples the card's before/after loss is measured on
LOSS_KEYS = ("loss", "occupancy", "attributes", "elevation", "iou")


@dataclass
class DistillResult:
    name: str
    folder: Path  # the models-folder entry
    work: Path
    teacher: TeacherReport
    loss_before: dict[str, float]
    loss_after: dict[str, float]
    evaluation: dict
    seconds: float
    extra: dict = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # teacher, dataset, training, evaluation


def work_folder(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "distill" / name


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads), torch {torch.__version__}"


def distill(
    images_dir: Path,
    name: str,
    models_dir: Path,
    data_dir: Path,
    settings: DistillSettings = DistillSettings(),
    resume: bool = False,
    progress: Callable[[TeacherProgress], None] | None = None,
    log: Callable[[str], None] = print,
) -> DistillResult:
    """Distil TRELLIS.2 into a Fresnel student named `name` (module docstring)."""
    started = time.monotonic()
    check_model_name(name)
    work = work_folder(data_dir, name)
    entry = Path(models_dir) / MODELS_SUBDIR / name
    if not resume and (work.exists() or entry.exists()):
        raise ValueError(f"a distillation named {name!r} exists ({work}); resume it, or choose another name")
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = replace(settings, base=Path(settings.base or BUNDLED_DIR))
    base = load_fresnel(settings.base)
    teacher_settings = TeacherSettings(
        settings.pipeline_type,
        settings.seeds_per_image,
        base.config.image_size,
        settings.teacher,
        settings.device,
    )
    stage_seconds: dict[str, float] = {}
    mark = time.monotonic()

    def stage_done(stage: str) -> None:
        nonlocal mark
        stage_seconds[stage] = round(time.monotonic() - mark, 2)
        mark = time.monotonic()

    report = write_teacher_data(images_dir, work / "teacher", models_dir, teacher_settings, progress, log)
    stage_done("teacher")
    dataset = TeacherDataset(work / "teacher", settings.holdout_fraction, log)
    config = student_config(base.config, dataset)
    dataset.check_config(config)
    loss_samples = dataset.train[:LOSS_SAMPLES]
    initial = FresnelNet(config)
    init_weights_from(initial, settings.base)
    loss_before = mean_loss(initial.to(device), dataset, loss_samples, device)
    stage_done("dataset")
    train_settings = TrainSettings(
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=min(settings.warmup_steps, max(1, settings.steps // 10)),
        total_steps=settings.steps,
        log_every=settings.log_every,
    )
    state = train(
        work / "run",
        config,
        train_settings,
        device,
        max_steps=settings.steps,
        log=log,
        init_from=settings.base,
        source=lambda c, s, d, st: TeacherSteps(dataset, c, s, d, st),
    )
    student = FresnelNet(config)
    student.load_state_dict(state["model"])
    student.to(device)
    stage_done("training")
    loss_after = mean_loss(student, dataset, loss_samples, device)
    evaluation = evaluate_students(student, base, dataset, dataset.held_out, device, log=log)
    stage_done("evaluation")
    result = DistillResult(
        name,
        entry,
        work,
        report,
        loss_before,
        loss_after,
        evaluation,
        time.monotonic() - started,
        stage_seconds=stage_seconds,
    )
    result.extra = {"state": state, "dataset": dataset, "settings": settings, "hardware": hardware(device)}
    write_entry(student, result)
    log(f"model written to {entry}")
    return result


def write_entry(student: FresnelNet, result: DistillResult) -> None:
    """The models-folder entry, made beside its place and renamed into it (the engine never sees half of one)."""
    entry = result.folder
    staging = entry.parent / f".{entry.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_fresnel(student, staging)
    (staging / CARD_FILE).write_text(card_text(result))
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(staging, entry)


def _losses(before: dict[str, float], after: dict[str, float]) -> str:
    lines = ["| | " + " | ".join(LOSS_KEYS) + " |", "| --- |" + " --- |" * len(LOSS_KEYS)]
    for label, values in (("start (the base's weights)", before), ("end", after)):
        lines.append(
            f"| {label} | " + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in LOSS_KEYS) + " |"
        )
    return "\n".join(lines)


def card_text(result: DistillResult) -> str:
    """`card.md` of a distilled model: data, training, held-out evaluation, use."""
    settings: DistillSettings = result.extra["settings"]
    dataset: TeacherDataset = result.extra["dataset"]
    state = result.extra["state"]
    report = result.teacher
    runs = len(dataset.runs)
    seed_bytes = sum(p.stat().st_size for p in dataset.store.root.rglob("seed-*.npz"))
    failures = "\n".join(f"- {f['item']}: {f['reason']}" for f in report.failures) or "- none"
    base_name = Path(settings.base).name
    held_items = len({s.item for s in dataset.held_out})
    data = (
        f"Teacher: TRELLIS.2, pipeline type `{settings.pipeline_type}`, {settings.seeds_per_image} seed(s) per input "
        f"(each its own noise). Inputs: {report.total}; done: {report.done}; given up: {report.failed}.\n\n"
        f"Teacher runs: {runs}; samples (view × seed): {len(dataset.train)} for training, "
        f"{len(dataset.held_out)} held out ({held_items} input(s)). Teacher data on disk: "
        f"{dataset.store.disk_bytes() / 2**20:.1f} MiB ({seed_bytes / max(1, runs) / 1024:.0f} KiB per teacher run).\n\n"
        f"Given up:\n{failures}"
    )
    last = state["history"][-1] if state["history"] else {}
    training = (
        f"From `{settings.base}` with a structure-noise input ({dataset.noise_channels} × "
        f"{dataset.noise_resolution}³); {state['step']} steps at batch {settings.batch_size}, lr {settings.lr} "
        f"(warm-up {settings.warmup_steps}, cosine), {state['seconds']:.0f} s on {result.extra['hardware']}.\n\n"
        f"Loss on {min(LOSS_SAMPLES, len(dataset.train))} training samples (the teacher's targets in the "
        f"student's frame; `fresnel.training.loss_terms`):\n\n{_losses(result.loss_before, result.loss_after)}\n\n"
        f"Last logged batch: {last}. Curves: `{result.work / 'run' / 'loss.png'}`."
    )
    samples = len(result.evaluation["rows"])
    evaluation = (
        f"{samples} held-out samples, scored against the teacher's mesh for the same seed (frame-free: "
        "each shape normalised to its bounding box, best turn about the vertical axis and mirror; mean "
        "(median)). Seconds: the student's network and surface stages per image here; the teacher's "
        "sampling and decoding per run when its data was made (neither includes the export).\n\n"
        + (evaluation_table(result.evaluation, result.name, base_name) if samples else "No held-out input.")
    )
    use = (
        f"Fast tab: Model → `{result.name}`; API: `POST /api/generate/fast` with "
        f'`params={{"fresnel_model": "{result.name}"}}`; command line: '
        f"`genesis generate IMAGE --fresnel-model {result.name}`. The seed chooses the structure noise."
    )
    return card_markdown(
        f"Fresnel `{result.name}`, distilled from TRELLIS.2",
        [("Data", data), ("Training", training), ("Evaluation (held out)", evaluation), ("Use", use)],
    )
