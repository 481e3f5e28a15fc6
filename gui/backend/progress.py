"""Turning engine callbacks `(stage, step, total)` into an overall fraction and an ETA from measured step times."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MIN_MEASURED_FRACTION = 0.05  # no ETA before this much work has been timed


@dataclass
class ProgressSnapshot:
    stage: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    updated: float = field(default_factory=time.monotonic)


class ProgressTracker:
    """Weights come from a stage plan (`[(stage, relative cost)]`; an unknown stage is appended with
    weight 1). The fraction never moves backwards. ETA = measured seconds per unit of work × work left."""

    def __init__(self, plan: list[tuple[str, float]] | None = None) -> None:
        self.plan = [(name, max(w, 1e-6)) for name, w in (plan or [])]
        self.total_weight = sum(w for _, w in self.plan) or 1.0
        self._clock: tuple[float, float] | None = None  # (time, fraction) of the first planned step
        self.snapshot = ProgressSnapshot()
        self._lock = threading.Lock()

    def _plan_fraction(self, stage: str, step: int, total: int) -> float | None:
        done = 0.0
        for name, weight in self.plan:
            if name == stage:
                within = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
                return (done + weight * within) / self.total_weight
            done += weight
        return None

    def update(self, stage: str, step: int, total: int) -> ProgressSnapshot:
        with self._lock:
            now = time.monotonic()
            planned = self._plan_fraction(stage.split(":")[0], step, total)  # "export:bake" counts as export
            if planned is None and total > 0:  # a stage the plan did not know: give it a unit of work
                self.plan.append((stage, 1.0))
                self.total_weight = sum(w for _, w in self.plan)
                planned = self._plan_fraction(stage, step, total)
            fraction = max(planned if planned is not None else 0.0, self.snapshot.fraction)
            if self._clock is None and planned:  # the clock starts once the first unit of work is done
                self._clock = (now, fraction)
            eta = None
            if self._clock is not None and fraction - self._clock[1] >= MIN_MEASURED_FRACTION:
                rate = (now - self._clock[0]) / (fraction - self._clock[1])  # seconds per unit of work
                eta = rate * (1.0 - fraction)
            self.snapshot = ProgressSnapshot(stage, step, total, min(fraction, 0.999), eta, now)
            return self.snapshot
