"""Euler sampler for rectified-flow models with classifier-free guidance, guidance rescale and a
guidance interval (the official `FlowEulerGuidanceIntervalSampler`, spec §8.2).

Conditioning is pluggable: `cond` is either a tensor (one image) or a `ConditionalVelocity`, an
object that returns the conditional velocity for a step. Multi-view sampling (several views per
step, or one view per step) is written that way, and shares everything else with single-image
sampling: time grid, guidance formula, rescale, interval, progress and cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..modules.sparse.tensor import SparseTensor, sample_std
from ..progress import CancelFlag, ProgressCallback, raise_if_cancelled

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
        t_model = torch.full((_batch_size(x_t),), 1000.0 * t, dtype=torch.float32, device=x_t.device)
        low, high = guidance_interval
        strength = guidance_strength if low <= t <= high else 1.0
        if strength == 1.0:
            return positive(model, x_t, t_model, step, **kwargs)
        if strength == 0.0:
            return model(x_t, t_model, neg_cond, **kwargs)
        v_pos = positive(model, x_t, t_model, step, **kwargs)
        v_neg = model(x_t, t_model, neg_cond, **kwargs)
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
        **kwargs,
    ) -> SamplerOutput:
        """Integrate from `noise` at t = 1 to t = 0; extra kwargs (e.g. `concat_cond`) reach the model.

        `progress(stage, k, steps)` is called after step k (1-based); `cancel` is checked before
        every step.
        """
        steps = int(steps)
        if len(guidance_interval) != 2:
            raise ValueError(f"guidance_interval must be [low, high], got {guidance_interval!r}")
        interval = (float(guidance_interval[0]), float(guidance_interval[1]))
        positive = cond if _is_conditional_velocity(cond) else SingleCondition(cond)
        if neg_cond is None and guidance_strength != 1.0:
            raise ValueError("classifier-free guidance needs neg_cond (use zeros like cond)")
        grid = time_grid(steps, float(rescale_t))
        x_t = noise
        out = SamplerOutput(samples=None)
        for k in range(steps):
            raise_if_cancelled(cancel)
            t, t_prev = float(grid[k]), float(grid[k + 1])
            v = self.guided_velocity(
                model,
                x_t,
                t,
                k,
                positive,
                neg_cond,
                float(guidance_strength),
                float(guidance_rescale),
                interval,
                **kwargs,
            )
            if keep_trajectory:
                out.pred_x_0.append(self._x0_from_v(x_t, t, v))
            x_t = x_t - (t - t_prev) * v
            if keep_trajectory:
                out.pred_x_t.append(x_t)
            if progress is not None:
                progress(stage, k + 1, steps)
        out.samples = x_t
        return out


def _is_conditional_velocity(cond: Any) -> bool:
    return callable(cond) and not torch.is_tensor(cond) and not isinstance(cond, (list, tuple))
