"""What a distillation can be told (`genesis fresnel distill`'s flags), without importing the heavy parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEACHER = "fresnel.distill.teacher:Trellis2Teacher"
HOLDOUT_FRACTION = 0.1  # of the inputs, held out for the evaluation


@dataclass(frozen=True)
class DistillSettings:
    pipeline_type: str = "512"
    seeds_per_image: int = 2
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    warmup_steps: int = 100
    holdout_fraction: float = HOLDOUT_FRACTION
    base: Path | None = None  # the checkpoint the student starts from; None: the built-in one
    teacher: str = DEFAULT_TEACHER  # `module:callable` building the teacher (`teacher_data.TeacherSettings`)
    device: str | None = None
    log_every: int = 25
