"""Turning engine callbacks `(stage, step, total)` into an overall fraction and a time left.

The stage plan (`[(stage, relative cost)]`) places every callback at a planned fraction. With the timings of
earlier jobs of the same kind (`timings.ExpectedCurve`), the bar shows the expected share of the time instead,
moves on between callbacks (through a long UV unwrap too) and the time left comes from this machine's history
(`eta_basis` "history"); without them it is a first-run estimate from the speed measured so far ("first_run")."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .timings import ExpectedCurve, Timeline

MIN_MEASURED_FRACTION = 0.05  # no first-run ETA before this much work has been timed
CLOCK_EXEMPT_STAGES = ("loading",)  # not timed: a warm engine loads in no time, a cold one in many seconds
TRUST_OWN_SPEED_AT = 0.25  # from this share of the expected time on, the job's own speed counts in full
SPEED_RATIO_LIMITS = (0.33, 3.0)  # how much faster or slower than its history a job may be taken to run
HISTORY, FIRST_RUN = "history", "first_run"


@dataclass
class ProgressSnapshot:
    stage: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    updated: float = field(default_factory=time.monotonic)
    eta_basis: str = FIRST_RUN


class ProgressTracker:
    """Weights come from the stage plan (an unknown stage is appended with weight 1); the fraction never moves
    backwards. `timeline` records (planned fraction, seconds since the clock started) for `timings`."""

    def __init__(
        self, plan: list[tuple[str, float]] | None = None, expected: ExpectedCurve | None = None
    ) -> None:
        self.plan = [(name, max(w, 1e-6)) for name, w in (plan or [])]
        self.total_weight = sum(w for _, w in self.plan) or 1.0
        self.expected = expected
        self.timeline: Timeline = []
        self._start: float | None = None  # when the clock started (the first timed report)
        self._planned = 0.0  # the planned fraction of the last report
        self._last_report = time.monotonic()
        self.snapshot = ProgressSnapshot(eta_basis=HISTORY if expected else FIRST_RUN)
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
        """A report from the engine (or the export)."""
        with self._lock:
            now = time.monotonic()
            head = stage.split(":")[0]  # "export:bake textures" counts as export
            planned = self._plan_fraction(head, step, total)
            if planned is None and total > 0:  # a stage the plan did not know: give it a unit of work
                self.plan.append((stage, 1.0))
                self.total_weight = sum(w for _, w in self.plan)
                planned = self._plan_fraction(stage, step, total)
            planned = max(planned if planned is not None else 0.0, self._planned)
            if self._start is None and head not in CLOCK_EXEMPT_STAGES:
                self._start = now
                self.timeline.append((planned, 0.0))  # the clock starts here: history counts from this point
            elif self._start is not None and planned > self._planned:
                self.timeline.append((planned, now - self._start))
            self._planned = planned
            self._last_report = now
            self.snapshot = self._estimate(stage, step, total, now)
            return self.snapshot

    def current(self) -> ProgressSnapshot:
        """The snapshot now: with a history, the bar and the time left move on between reports."""
        with self._lock:
            if self.expected is None or self._start is None:
                return self.snapshot
            s = self.snapshot
            self.snapshot = self._estimate(s.stage, s.step, s.total, time.monotonic())
            return self.snapshot

    def finish(self) -> Timeline:
        """The job's work is done: close the timeline at fraction 1 and return it."""
        with self._lock:
            if self._start is not None:
                if self.timeline and self.timeline[-1][0] >= 1.0:
                    self.timeline.pop()
                self.timeline.append((1.0, time.monotonic() - self._start))
            return list(self.timeline)

    def _estimate(self, stage: str, step: int, total: int, now: float) -> ProgressSnapshot:
        if self.expected is not None:
            fraction, eta = self._from_history(now)
            basis = HISTORY
        else:
            fraction, eta, basis = self._planned, None, FIRST_RUN
            timed = self._planned - self.timeline[0][0] if self.timeline else 0.0
            if self._start is not None and timed >= MIN_MEASURED_FRACTION:
                per_unit = (now - self._start) / timed  # seconds per unit of planned work
                eta = per_unit * (1.0 - self._planned)
        fraction = min(max(fraction, self.snapshot.fraction), 0.999)
        return ProgressSnapshot(stage, step, total, fraction, eta, now, basis)

    def _from_history(self, now: float) -> tuple[float, float]:
        """(fraction of the expected time, seconds left) from the expected curve and this job's own speed."""
        curve = self.expected
        total = curve.total_s
        if self._start is None or total <= 0:
            return 0.0, total
        at_report = curve.seconds_at(self._planned)  # where history says the last report falls
        elapsed = self._last_report - self._start
        ratio = elapsed / at_report if at_report > 0 else 1.0
        ratio = min(max(ratio, SPEED_RATIO_LIMITS[0]), SPEED_RATIO_LIMITS[1])
        trust = min(1.0, at_report / (TRUST_OWN_SPEED_AT * total))  # history alone at first, own speed later
        ratio = 1.0 + (ratio - 1.0) * trust
        since = (now - self._last_report) / ratio  # in the history's seconds
        ceiling = curve.seconds_at(curve.next_point_after(self._planned))  # not past the next report
        position = min(at_report + since, ceiling)
        return position / total, max(0.0, (total - position) * ratio)
