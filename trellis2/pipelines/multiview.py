"""Multi-view TRELLIS.2: one asset from 2-8 images of the same object.

Two ways to condition every sampled stage (sparse structure, shape, both cascade stages, texture)
on several views, each plugged into the sampler as a `ConditionalVelocity`:

* `stochastic`: sampling step k is conditioned on view `k mod V` alone;
* `multidiffusion`: at every step the conditional velocities of all views are averaged, then
  TRELLIS.2's own guidance is applied to that average (`s v_cond + (1 - s) v_uncond`, with the
  guidance rescale and interval of the stage). Views are batched into as few forwards as the
  token budget allows.

The unconditional branch, the time grid, the RNG discipline and the outputs are those of the
single-image pipeline; with V copies of one image both modes reproduce the single-image result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from o_voxel.asset import MeshWithVoxel

from ..modules.sparse.tensor import SparseTensor
from ..progress import CancelFlag, ProgressCallback, no_progress, raise_if_cancelled
from .conditioning import Conditioning
from .image_loading import ImageInputError, normalize_image
from .trellis2_image_to_3d import Trellis2ImageTo3DPipeline

MULTIVIEW_MODES = ("stochastic", "multidiffusion")
MIN_VIEWS, MAX_VIEWS = 2, 8
DEFAULT_BATCH_TOKENS = 65536  # latent tokens per batched forward in multidiffusion mode


class StochasticViews:
    """Step k is conditioned on view `k mod V` (`views [V, T, C]`)."""

    def __init__(self, views: torch.Tensor) -> None:
        self.views = views

    def __call__(self, model, x_t, t_model: torch.Tensor, step: int, **kwargs):
        view = step % self.views.shape[0]
        return model(x_t, t_model, self.views[view : view + 1], **kwargs)


def _tokens_per_sample(x: Any) -> int:
    return x.feats.shape[0] if isinstance(x, SparseTensor) else int(torch.tensor(x.shape[2:]).prod())


def _repeat(x: Any, copies: int) -> Any:
    """`copies` batch elements holding the same single-sample latent (dense or sparse)."""
    if isinstance(x, SparseTensor):
        rows = x.coords.shape[0]
        coords = x.coords.repeat(copies, 1)
        coords[:, 0] = torch.arange(copies, device=coords.device, dtype=coords.dtype).repeat_interleave(rows)
        return SparseTensor(x.feats.repeat(copies, 1), coords, batch_size=copies)
    if torch.is_tensor(x):
        return x.expand(copies, *x.shape[1:])
    return x


class MultiDiffusionViews:
    """The average of every view's conditional velocity at every step (`views [V, T, C]`)."""

    def __init__(self, views: torch.Tensor, max_batch_tokens: int = DEFAULT_BATCH_TOKENS) -> None:
        self.views = views
        self.max_batch_tokens = max_batch_tokens

    def __call__(self, model, x_t, t_model: torch.Tensor, step: int, **kwargs):
        batch = x_t.batch_size if isinstance(x_t, SparseTensor) else x_t.shape[0]
        if batch != 1:
            raise ValueError("multidiffusion sampling generates one sample at a time")
        num_views = self.views.shape[0]
        per_forward = max(1, min(num_views, self.max_batch_tokens // max(1, _tokens_per_sample(x_t))))
        total = None
        for start in range(0, num_views, per_forward):
            count = min(per_forward, num_views - start)
            out = model(
                _repeat(x_t, count),
                t_model.expand(count),
                self.views[start : start + count],
                **{k: _repeat(v, count) for k, v in kwargs.items()},
            )
            feats = (
                out.feats.reshape(count, -1, out.feats.shape[-1]) if isinstance(out, SparseTensor) else out
            )
            summed = feats.sum(dim=0, keepdim=not isinstance(out, SparseTensor))
            total = summed if total is None else total + summed
        mean = total / num_views
        return x_t.replace(mean) if isinstance(x_t, SparseTensor) else mean


class Trellis2MultiViewPipeline(Trellis2ImageTo3DPipeline):
    """`run_multi_image(images, mode)`: the single-image pipeline conditioned on several views."""

    max_batch_tokens = DEFAULT_BATCH_TOKENS

    def multi_view_cond(self, images: Sequence[Image.Image], resolution: int, mode: str) -> Conditioning:
        # One feature forward per view, so that each view's tokens are exactly its single-image ones.
        views = torch.cat([self.image_features([image], resolution) for image in images], dim=0)
        negative = torch.zeros_like(views[:1])
        if mode == "stochastic":
            return Conditioning(StochasticViews(views), negative)
        return Conditioning(MultiDiffusionViews(views, self.max_batch_tokens), negative)

    def run_multi_image(
        self,
        images: Sequence[Image.Image],
        mode: str = "stochastic",
        seed: int = 42,
        pipeline_type: str | None = None,
        sparse_structure_sampler_params: dict[str, Any] | None = None,
        shape_slat_sampler_params: dict[str, Any] | None = None,
        tex_slat_sampler_params: dict[str, Any] | None = None,
        max_num_tokens: int = 49152,
        preprocess_image: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> list[MeshWithVoxel]:
        """Generate one asset from 2-8 views of the same object."""
        progress = progress or no_progress
        if mode not in MULTIVIEW_MODES:
            raise ValueError(f"unknown multi-view mode {mode!r}; choose 'stochastic' or 'multidiffusion'")
        images = list(images)
        if not MIN_VIEWS <= len(images) <= MAX_VIEWS:
            raise ImageInputError(
                f"multi-view generation needs {MIN_VIEWS} to {MAX_VIEWS} images, got {len(images)}"
            )
        for index, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ImageInputError(f"view {index + 1}: expected a PIL image, got {type(image).__name__}")
        pipeline_type = self._check_run_args(pipeline_type, seed, max_num_tokens)
        prepared = []
        for index, image in enumerate(images):
            raise_if_cancelled(cancel)
            try:
                prepared.append(
                    self.preprocess_image(image)
                    if preprocess_image
                    else normalize_image(image).convert("RGB")
                )
            except ImageInputError as exc:
                raise ImageInputError(f"view {index + 1}: {exc}") from exc
            progress("preprocess", index + 1, len(images))
        return self.generate(
            lambda resolution: self.multi_view_cond(prepared, resolution, mode),
            seed,
            pipeline_type,
            sparse_structure_sampler_params or {},
            shape_slat_sampler_params or {},
            tex_slat_sampler_params or {},
            max_num_tokens,
            progress,
            cancel,
        )


__all__ = ["MULTIVIEW_MODES", "MultiDiffusionViews", "StochasticViews", "Trellis2MultiViewPipeline"]
