"""Benchmark `genesis fresnel distill` with real-size TRELLIS.2 networks of random weights as the teacher.

    python -m tools.bench_distill --device cuda --images 8 --seeds-per-image 2 --steps 300 \\
        --out docs/benchmarks/distill-h200.json
    python -m tools.bench_distill --device cpu --quick      # the tiny models as the teacher (smoke test)

The whole command runs (`fresnel.distill.run.distill`: teacher data in its child process, pose fits,
training, evaluation, the models-folder entry) on procedural RGBA renders. The teacher is
`BenchTeacher`: the pipeline of `tools/bench_pipeline.py` (real sizes, random weights, low-VRAM: every
network moves to the GPU for its stage and back), whose sparse structure is a real mesh's voxels, so each
run does all of a real run's work on a realistic number of voxels. Random weights make random shapes, so
the student's scores mean nothing here; the times and the disk do. Reported: teacher seconds per run and
per input (steady state, after the child has loaded the networks), disk per run and per input, seconds per
training step, every stage of the command, and what 10,000 and 50,000 inputs would take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fresnel.distill.run import distill  # noqa: E402
from fresnel.distill.settings import DistillSettings  # noqa: E402
from fresnel.distill.teacher import Trellis2Teacher  # noqa: E402
from tools.bench_fresnel import procedural_image  # noqa: E402
from tools.bench_pipeline import (  # noqa: E402
    BenchPipeline,
    hardware,
    mug_mesh,
    real_pipeline,
    scale_for_tokens,
    surface_voxels,
)
from tools.bench_report import hardware_phrase, save_report  # noqa: E402
from tools.make_tiny_models import make_tiny_models  # noqa: E402

TEACHER = "tools.bench_distill:BenchTeacher"
HR_TOKENS = 10_000  # the mug's size: its surface at 64^3 has about this many voxels (a quarter at 32^3)
QUICK_TOKENS = 120
SCALES = (10_000, 50_000)  # inputs to extrapolate to


class BenchTeacher(Trellis2Teacher):
    """The distillation teacher on the benchmark pipeline: the tiny models when `models_dir` holds them
    (`--quick`), else real-size networks with random weights; the sparse structure is the mug's voxels."""

    def load_pipeline(self, models_dir: Path, device: str | None) -> BenchPipeline:
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        quick = (Path(models_dir) / "pipeline.json").is_file()
        pipe = BenchPipeline.from_pretrained(models_dir, device=target) if quick else real_pipeline(target)
        mesh = mug_mesh()
        scale = scale_for_tokens(mesh, 64, QUICK_TOKENS if quick else HR_TOKENS)
        pipe.lr_coords = surface_voxels(mesh, 32, scale).to(target)
        pipe.hr_coords = surface_voxels(mesh, 64, scale).to(target)
        return pipe


def folder_bytes(folder: Path, pattern: str) -> list[int]:
    return [p.stat().st_size for p in sorted(folder.rglob(pattern))]


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    images = work / "images"
    images.mkdir(parents=True)
    for i in range(args.images):
        procedural_image(images / f"object-{i:03d}.png", seed=i, resolution=256 if args.quick else 512)
    models = make_tiny_models(work / "models") if args.quick else work / "models"
    models.mkdir(parents=True, exist_ok=True)
    settings = DistillSettings(
        pipeline_type=args.pipeline_type,
        seeds_per_image=args.seeds_per_image,
        steps=args.steps,
        batch_size=args.batch_size,
        teacher=TEACHER,
        device=args.device,
        holdout_fraction=0.25,
    )
    started = time.perf_counter()
    result = distill(
        images, "bench", models, work / "data", settings, log=lambda line: print(line, flush=True)
    )
    total = time.perf_counter() - started
    teacher_dir = result.work / "teacher"
    run_bytes = folder_bytes(teacher_dir, "seed-*.npz")
    view_bytes = folder_bytes(teacher_dir, "views.npz")
    run_seconds = [
        s["seconds"]
        for p in sorted(teacher_dir.rglob("done.json"))
        for s in json.loads(p.read_text())["stats"]
    ]
    inputs = result.teacher.input_seconds
    steady = inputs[1:] if len(inputs) > 1 else inputs  # the first input also waits for the networks to load
    per_input_s = statistics.median(steady)
    per_input_bytes = statistics.mean(view_bytes) + statistics.mean(run_bytes) * args.seeds_per_image
    state = result.extra["state"]
    return {
        "quick": args.quick,
        "hardware": hardware(torch.device(args.device)),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "inputs": args.images,
        "teacher_runs": len(run_seconds),
        "failed": result.teacher.failed,
        "teacher_run_seconds_median": statistics.median(run_seconds),
        "teacher_input_seconds": inputs,
        "teacher_input_seconds_steady": per_input_s,
        "run_bytes_mean": statistics.mean(run_bytes),
        "input_crop_bytes_mean": statistics.mean(view_bytes),
        "bytes_per_input": per_input_bytes,
        "training_steps": state["step"],
        "training_seconds_per_step": state["seconds"] / max(1, state["step"]),
        "stage_seconds": result.stage_seconds,
        "command_seconds": total,
        "scaled": {
            str(n): {"teacher_hours": n * per_input_s / 3600, "disk_gib": n * per_input_bytes / 2**30}
            for n in SCALES
        },
    }


def markdown(report: dict[str, Any]) -> str:
    hw = report["hardware"]
    s = report["settings"]
    lines = [
        "# `genesis fresnel distill`: teacher data and training"
        + (" (quick: tiny models)" if report["quick"] else ""),
        "",
        f"Hardware: {hardware_phrase(hw)}"
        + ". Teacher: TRELLIS.2 "
        + f"{s['pipeline_type']}, low-VRAM, "
        + ("tiny models" if report["quick"] else "real-size networks with random weights")
        + f"; {report['inputs']} procedural inputs x {s['seeds_per_image']} seeds; "
        + f"student batch {s['batch_size']}.",
        "",
        "| | |",
        "| --- | ---: |",
        f"| teacher run (pipeline only), median | {report['teacher_run_seconds_median']:.2f} s |",
        f"| teacher data per input (all its seeds, record, write), steady | {report['teacher_input_seconds_steady']:.2f} s |",
        f"| disk per teacher run | {report['run_bytes_mean'] / 1024:.0f} KiB |",
        f"| disk per input (crops + {s['seeds_per_image']} runs) | {report['bytes_per_input'] / 1024:.0f} KiB |",
        f"| training, per step | {report['training_seconds_per_step'] * 1000:.0f} ms |",
        f"| whole command ({report['training_steps']} steps) | {report['command_seconds']:.0f} s |",
    ]
    for n, row in report["scaled"].items():
        lines.append(
            f"| {int(n):,} inputs: teacher data / disk | {row['teacher_hours']:.1f} h / {row['disk_gib']:.1f} GiB |"
        )
    lines += [
        "",
        "Stages of the command (s): " + ", ".join(f"{k} {v}" for k, v in report["stage_seconds"].items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the tiny models as the teacher (smoke test)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seeds-per-image", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=DistillSettings.batch_size)
    parser.add_argument("--pipeline-type", default="512")
    parser.add_argument("--out", type=Path, help="write the report as JSON (and Markdown next to it)")
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2 (one input is held out)")
    with tempfile.TemporaryDirectory(prefix="bench_distill_") as tmp:
        report = measure(args, Path(tmp))
    text = markdown(report)
    print(text)
    save_report(args.out, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
