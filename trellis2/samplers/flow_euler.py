"""Euler sampler for rectified-flow models with classifier-free guidance, guidance rescale and a
guidance interval (the official `FlowEulerGuidanceIntervalSampler`, spec §8.2).

Conditioning is pluggable: `cond` is either a tensor (one image) or a `ConditionalVelocity`, an
object that returns the conditional velocity for a step. Multi-view sampling (several views per
step, or one view per step) is written that way, and shares everything else with single-image
sampling: time grid, guidance formula, rescale, interval, progress and cancellation.

`sample(..., fast=...)` chooses how the model is evaluated: the reference path calls `model` as the
official sampler does (two forwards per guided step); the fast path (`fast_path.FlowRunner`) computes
the same velocities with batched guidance pairs, a per-run context cache and CUDA graphs. The
time grid, the guidance arithmetic and the Euler update are the same code in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..modules.sparse.tensor import SparseTensor, sample_std
from ..modules.transformer import FastPathUnsupported
from ..progress import CancelFlag, ProgressCallback, raise_if_cancelled
from .fast_path import FastPathReport, FastPathSetting, FlowRunner, resolve_fast_path

Latent = Any  # torch.Tensor (dense stage) or SparseTensor (sparse stages)


class ConditionalVelocity(Protocol):
    """Returns the positive (conditional) velocity of `model` at `x_t` for sampling step `step`."""

    def __call__(
        self, model: Callable, x_t: Latent, t_model: torch.Tensor, step: int, **kwargs
    ) -> Latent: ...


@dataclass
class SingleCondition:
    """The ordinary case: one conditioning tensor (or varlen list) for every step."""

    cond: Any

    def __call__(self, model: Callable, x_t: Latent, t_model: torch.Tensor, step: int, **kwargs) -> Latent:
        return model(x_t, t_model, self.cond, **kwargs)


@dataclass
class SamplerOutput:
    """The final sample plus, when requested, the whole trajectory."""

    samples: Latent
    pred_x_t: list[Latent] = field(default_factory=list)
    pred_x_0: list[Latent] = field(default_factory=list)
    fast_path: FastPathReport | None = None


def time_grid(steps: int, rescale_t: float) -> np.ndarray:
    """`steps + 1` float64 times from 1 to 0, warped by `r t / (1 + (r - 1) t)`."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if rescale_t <= 0:
        raise ValueError(f"rescale_t must be positive, got {rescale_t}")
    s = np.linspace(1.0, 0.0, steps + 1)
    return rescale_t * s / (1.0 + (rescale_t - 1.0) * s)


def _batch_size(x: Latent) -> int:
    return x.batch_size if isinstance(x, SparseTensor) else x.shape[0]


def _per_sample_std(x: Latent) -> Latent:
    """Dense: unbiased std over all non-batch dims; sparse: population std per sample (official)."""
    if isinstance(x, SparseTensor):
        return sample_std(x)
    return x.std(dim=list(range(1, x.dim())), keepdim=True)


class FlowEulerGuidanceIntervalSampler:
    """Euler integration of `dx/dt = v` from t = 1 (noise) to t = 0 with guided velocities."""

    def __init__(self, sigma_min: float = 1e-5) -> None:
        self.sigma_min = sigma_min

    # --- flow algebra ------------------------------------------------------------------------
    def _x0_from_v(self, x_t: Latent, t: float, v: Latent) -> Latent:
        return (1 - self.sigma_min) * x_t - (self.sigma_min + (1 - self.sigma_min) * t) * v

    def _v_from_x0(self, x_t: Latent, t: float, x_0: Latent) -> Latent:
        return ((1 - self.sigma_min) * x_t - x_0) / (self.sigma_min + (1 - self.sigma_min) * t)

    # --- one guided prediction ---------------------------------------------------------------
    def guided_velocity(
        self,
        model: Callable,
        x_t: Latent,
        t: float,
        step: int,
        positive: ConditionalVelocity,
        neg_cond: Any,
        guidance_strength: float,
        guidance_rescale: float,
        guidance_interval: tuple[float, float],
        **kwargs,
    ) -> Latent:
        """`s v_pos + (1 - s) v_neg` inside the interval (plus rescale), `v_pos` outside it."""
        t_model = _model_time(x_t, t)
        strength = _strength(t, guidance_strength, guidance_interval)
        if strength == 1.0:
            return positive(model, x_t, t_model, step, **kwargs)
        if strength == 0.0:
            return model(x_t, t_model, neg_cond, **kwargs)
        v_pos = positive(model, x_t, t_model, step, **kwargs)
        v_neg = model(x_t, t_model, neg_cond, **kwargs)
        return self.combine_guidance(x_t, t, v_pos, v_neg, strength, guidance_rescale)

    def fast_guided_velocity(
        self,
        runner: FlowRunner,
        x_t: Latent,
        t: float,
        guidance_strength: float,
        guidance_rescale: float,
        guidance_interval: tuple[float, float],
    ) -> Latent:
        """`guided_velocity` with the model evaluated by a fast-path `runner`."""
        t_model = _model_time(x_t, t)
        strength = _strength(t, guidance_strength, guidance_interval)
        if strength == 1.0:
            return runner.positive(x_t, t_model)
        if strength == 0.0:
            return runner.negative(x_t, t_model)
        v_pos, v_neg = runner.pair(x_t, t_model)
        return self.combine_guidance(x_t, t, v_pos, v_neg, strength, guidance_rescale)

    def combine_guidance(
        self, x_t: Latent, t: float, v_pos: Latent, v_neg: Latent, strength: float, guidance_rescale: float
    ) -> Latent:
        """Classifier-free guidance of the two velocities, with the official std rescale."""
        v = strength * v_pos + (1 - strength) * v_neg
        if guidance_rescale > 0:
            x0_pos = self._x0_from_v(x_t, t, v_pos)
            x0_cfg = self._x0_from_v(x_t, t, v)
            ratio = _per_sample_std(x0_pos) / _per_sample_std(x0_cfg)
            x0 = guidance_rescale * (x0_cfg * ratio) + (1 - guidance_rescale) * x0_cfg
            v = self._v_from_x0(x_t, t, x0)
        return v

    # --- the loop ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        model: Callable,
        noise: Latent,
        cond: Any,
        neg_cond: Any = None,
        steps: int = 50,
        rescale_t: float = 1.0,
        guidance_strength: float = 3.0,
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] | list[float] = (0.0, 1.0),
        progress: ProgressCallback | None = None,
        stage: str = "sampling",
        cancel: CancelFlag | None = None,
        keep_trajectory: bool = False,
        fast: FastPathSetting = None,
        **kwargs,
    ) -> SamplerOutput:
        """Integrate from `noise` at t = 1 to t = 0; extra kwargs (e.g. `concat_cond`) reach the model.

        `progress(stage, k, steps)` is called after step k (1-based); `cancel` is checked before
        every step. `fast` (see `fast_path.resolve_fast_path`; default: fast on CUDA, reference
        elsewhere) picks how the model is evaluated; `SamplerOutput.fast_path` says what ran.
        """
        steps = int(steps)
        if len(guidance_interval) != 2:
            raise ValueError(f"guidance_interval must be [low, high], got {guidance_interval!r}")
        interval = (float(guidance_interval[0]), float(guidance_interval[1]))
        positive = cond if _is_conditional_velocity(cond) else SingleCondition(cond)
        if neg_cond is None and guidance_strength != 1.0:
            raise ValueError("classifier-free guidance needs neg_cond (use zeros like cond)")
        grid = time_grid(steps, float(rescale_t))
        strength, rescale = float(guidance_strength), float(guidance_rescale)
        runner, report = self._fast_runner(
            fast, model, noise, cond, neg_cond, grid, strength, interval, kwargs
        )
        x_t = noise
        out = SamplerOutput(samples=None, fast_path=report)
        try:
            for k in range(steps):
                raise_if_cancelled(cancel)
                t, t_prev = float(grid[k]), float(grid[k + 1])
                if runner is None:
                    v = self.guided_velocity(
                        model, x_t, t, k, positive, neg_cond, strength, rescale, interval, **kwargs
                    )
                else:
                    v = self.fast_guided_velocity(runner, x_t, t, strength, rescale, interval)
                if keep_trajectory:
                    out.pred_x_0.append(self._x0_from_v(x_t, t, v))
                x_t = x_t - (t - t_prev) * v
                if keep_trajectory:
                    out.pred_x_t.append(x_t)
                if progress is not None:
                    progress(stage, k + 1, steps)
        finally:
            if runner is not None:
                runner.close()
        out.samples = x_t
        return out

    def _fast_runner(
        self,
        fast: FastPathSetting,
        model: Callable,
        noise: Latent,
        cond: Any,
        neg_cond: Any,
        grid: np.ndarray,
        strength: float,
        interval: tuple[float, float],
        kwargs: dict[str, Any],
    ) -> tuple[FlowRunner | None, FastPathReport]:
        """A `FlowRunner` for this run, or None (reference path) with the reason in the report."""
        options = resolve_fast_path(fast, noise.device)
        if options is None:
            return None, FastPathReport(reason="reference path selected")
        if _is_conditional_velocity(cond):
            return None, FastPathReport(
                reason="a conditional velocity (e.g. multi-view) runs the reference path"
            )
        try:
            runner = FlowRunner(model, noise, cond, neg_cond, options, **kwargs)
        except FastPathUnsupported as exc:
            return None, FastPathReport(reason=str(exc))
        counts = dict.fromkeys(("positive", "negative", "pair"), 0)
        for t in grid[:-1]:
            s = _strength(float(t), strength, interval)
            kinds = ["positive"] if s == 1.0 else ["negative"] if s == 0.0 else ["pair"]
            if kinds == ["pair"] and not options.batch_guidance:
                kinds = ["positive", "negative"]
            for kind in kinds:
                counts[kind] += 1
        runner.expect(counts)
        return runner, runner.report


def _model_time(x_t: Latent, t: float) -> torch.Tensor:
    """The network's time input: `[B]` float32 `1000 t`."""
    return torch.full((_batch_size(x_t),), 1000.0 * t, dtype=torch.float32, device=x_t.device)


def _strength(t: float, guidance_strength: float, guidance_interval: tuple[float, float]) -> float:
    """The guidance strength at `t`: `guidance_strength` inside the (inclusive) interval, else 1."""
    low, high = guidance_interval
    return guidance_strength if low <= t <= high else 1.0


def _is_conditional_velocity(cond: Any) -> bool:
    return callable(cond) and not torch.is_tensor(cond) and not isinstance(cond, (list, tuple))
