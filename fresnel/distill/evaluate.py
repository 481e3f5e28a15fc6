"""The student on the held-out teacher data, scored against the teacher's own mesh, and the model card.

Each held-out sample (one view, one teacher seed) is scored as `fresnel.evaluation` scores Fresnel on
procedural objects — frame-free (each shape normalised by its bounding box, the best turn about the vertical
axis and mirror), Chamfer-L1 and F-score at `F_THRESHOLD`, base-colour error — with the teacher's stored
surface samples as the truth. Three students are compared:

- `student`: the distilled model as the engine runs it, given its seed's structure noise;
- `student_matched`: the same model given the teacher's noise for that seed mapped into its frame (how
  closely it learned the teacher's answer for that noise);
- `base`: the checkpoint it started from.

Times: the student's network and surface stages per image on this machine, against the teacher's time
per run when its data was made (sampling and decoding; neither includes the export).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from ..evaluation import (
    F_THRESHOLD,
    ScoreSettings,
    Shape,
    TruthReference,
    fresnel_shape,
    method_stats,
    score_candidates,
)
from ..network import FresnelNet
from ..pipeline import FresnelPipeline
from .dataset import Sample, TeacherDataset

METRICS = ("chamfer_l1", "f_score", "color_error", "seconds")
LABELS = {
    "student": "{name} (seed's noise, as in the app)",
    "student_matched": "{name} (the teacher's noise, mapped)",
    "base": "{base} (the checkpoint it started from)",
}


def evaluate_students(
    student: FresnelNet,
    base: FresnelNet | None,
    dataset: TeacherDataset,
    samples: list[Sample],
    device: torch.device | str = "cpu",
    settings: ScoreSettings = ScoreSettings(),
    log: Callable[[str], None] = print,
) -> dict:
    """`{"rows", "summary", "teacher_seconds"}` over `samples` (module docstring)."""
    pipelines = {"student": FresnelPipeline(student, device)}
    if base is not None:
        pipelines["base"] = FresnelPipeline(base, device)
    rows = []
    for number, sample in enumerate(samples, 1):
        run = dataset.runs[sample.run]
        reference = TruthReference.from_samples(
            run.surface_points.float(), run.surface_colors.float() / 255, settings
        )
        crop = dataset.crop(sample)[None]
        seconds: dict[str, float] = {}
        student_pipeline = pipelines["student"]
        noises = {
            "student": student_pipeline.noise_for([sample.seed]),
            "student_matched": dataset.teacher_noise([sample], student.config, student_pipeline.device),
            "base": None,
        }
        candidates = {
            name: timed_shape(pipelines.get(name, student_pipeline), crop, noises[name], seconds, name)
            for name in noises
            if name != "base" or "base" in pipelines
        }
        generator = torch.Generator().manual_seed(sample.seed)
        row = score_candidates(candidates, reference, generator)
        for name, value in seconds.items():
            row[name]["seconds"] = value
        rows.append({"item": sample.item, "view": sample.view, "seed": sample.seed, **row})
        log(f"evaluated {number}/{len(samples)} held-out samples")
    methods = [m for m in LABELS if rows and m in rows[0]]
    teacher = [dataset.runs[s.run].stats["seconds"] for s in samples]
    return {
        "rows": rows,
        "summary": {m: method_stats(rows, m, METRICS) for m in methods},
        "teacher_seconds": statistics.fmean(teacher) if teacher else math.nan,
    }


def timed_shape(
    pipeline: FresnelPipeline, crop: torch.Tensor, noise: torch.Tensor | None, seconds: dict, name: str
) -> Callable[[], Shape]:
    """Builds the pipeline's shape for `crop` (network and surface), putting its time in `seconds[name]`."""

    def build() -> Shape:
        started = time.perf_counter()
        try:
            return fresnel_shape(pipeline.predict(crop, noise), 0)
        finally:
            seconds[name] = time.perf_counter() - started

    return build


def _cell(stats: dict, digits: int, factor: float = 1.0) -> str:
    mean, median = stats["mean"], stats["median"]
    return "–" if math.isnan(mean) else f"{mean * factor:.{digits}f} ({median * factor:.{digits}f})"


def evaluation_table(result: dict, name: str, base: str) -> str:
    """The card's Markdown table: one row per student, the teacher's time below."""
    lines = [
        f"| Model | Chamfer-L1 ↓ | F@{F_THRESHOLD:g} ↑ | Base-colour error ↓ (0–255) | Seconds per image | No surface |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, stats in result["summary"].items():
        label = LABELS[method].format(name=name, base=base)
        lines.append(
            f"| {label} | {_cell(stats['chamfer_l1'], 4)} | {_cell(stats['f_score'], 3)} | "
            f"{_cell(stats['color_error'], 1, 255.0)} | {_cell(stats['seconds'], 3)} | {stats['failures']} |"
        )
    teacher = result["teacher_seconds"]
    lines.append(
        f"| TRELLIS.2 (the teacher) | 0 | 1 | 0 | {'–' if math.isnan(teacher) else f'{teacher:.3f}'} | 0 |"
    )
    return "\n".join(lines) + "\n"


def card_markdown(title: str, sections: list[tuple[str, str]]) -> str:
    """A model card: the title and `(heading, Markdown)` sections."""
    body = "\n".join(f"## {heading}\n\n{text.rstrip()}\n" for heading, text in sections)
    return f"# {title}\n\n{body}"
