"""How long jobs take on this machine, learned from the jobs it has finished.

Every finished job leaves its timeline: the planned fraction of its stage plan (`ProgressTracker`) against the
seconds since its work began (after the engine was loaded: a warm engine must not look like a fast machine),
export included. Jobs of one kind (`timing_key`: engine, device, stage plan, pipeline type, export settings,
image count) are alike, so the median of the latest timelines of that kind (`ExpectedCurve`) tells the next job
of that kind how far along it is and how long it has left."""

from __future__ import annotations

import bisect
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HISTORY_RUNS = 5  # the latest timelines of a kind that make its expected curve
KEPT_RUNS = 20  # timelines kept per kind
TIMELINE_POINTS = 64  # at most this many points are stored per timeline
FRACTION_DIGITS = 5  # stored fractions are rounded to this many digits ...
FRACTION_TOLERANCE = 1e-4  # ... so fractions closer than this are the same report
# The parameters that change how long a job takes (besides its stage plan, which carries the sampling steps).
TIMING_PARAMS = ("pipeline_type", "texture_size", "decimation_target", "remesh")

Timeline = list[tuple[float, float]]  # (planned fraction, seconds since the work began), both increasing


def timing_key(engine: str, device: str, plan: Sequence[tuple[str, float]], params: Any, images: int) -> str:
    """The kind of a job, as a stable string: jobs of one kind take about the same time on one machine."""
    settings = {name: getattr(params, name) for name in TIMING_PARAMS if hasattr(params, name)}
    kind = {
        "engine": engine,
        "device": device,
        "plan": [[n, w] for n, w in plan],
        "images": images,
        **settings,
    }
    return json.dumps(kind, sort_keys=True, default=str)


def device_label(device: str | None) -> str:
    """The accelerator jobs run on, by name (`cuda:NVIDIA H200`, `cpu`): timings are per device."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        index = torch.device(device).index if device and device.startswith("cuda") else None
        return f"cuda:{torch.cuda.get_device_name(index or 0)}"
    return "cpu"


def compact(timeline: Timeline, points: int = TIMELINE_POINTS) -> Timeline:
    """At most `points` points of `timeline` (always its first and last), rounded for storage."""
    if len(timeline) > points:
        step = (len(timeline) - 1) / (points - 1)
        timeline = [timeline[round(i * step)] for i in range(points)]
    return [(round(p, FRACTION_DIGITS), round(t, 3)) for p, t in timeline]


def interpolate(timeline: Timeline, fraction: float) -> float:
    """The seconds at planned `fraction` on `timeline` (linear between its points, flat beyond its ends)."""
    fractions = [p for p, _ in timeline]
    i = bisect.bisect_left(fractions, fraction)
    if i == 0:
        return timeline[0][1] * (fraction / fractions[0] if fractions[0] > 0 else 1.0)
    if i >= len(timeline):
        return timeline[-1][1]
    (p0, t0), (p1, t1) = timeline[i - 1], timeline[i]
    return t0 + (t1 - t0) * ((fraction - p0) / (p1 - p0) if p1 > p0 else 1.0)


@dataclass
class ExpectedCurve:
    """The expected seconds at each planned fraction for one kind of job, from `runs` past timelines."""

    points: Timeline
    runs: int

    @property
    def total_s(self) -> float:
        return self.points[-1][1]

    @classmethod
    def from_timelines(cls, timelines: Sequence[Timeline]) -> ExpectedCurve | None:
        """The median of `timelines` at every fraction any of them has; None without a usable timeline."""
        usable = [t for t in timelines if len(t) >= 2 and t[-1][1] > 0]
        if not usable:
            return None
        fractions = sorted({p for t in usable for p, _ in t})
        points, last = [], 0.0
        for p in fractions:
            last = max(last, statistics.median(interpolate(t, p) for t in usable))
            points.append((p, last))
        return cls(points, len(usable))

    def seconds_at(self, fraction: float) -> float:
        return interpolate(self.points, fraction)

    def next_point_after(self, fraction: float) -> float:
        """The planned fraction of the next point after `fraction` (where the next progress report is due)."""
        fractions = [p for p, _ in self.points]
        i = bisect.bisect_right(fractions, fraction + FRACTION_TOLERANCE)
        return fractions[i] if i < len(fractions) else 1.0
