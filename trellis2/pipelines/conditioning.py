"""Conditioning: what the flow models are conditioned on, computed from images with DINOv3."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..samplers import ConditionalVelocity
from .pipeline_models import IMAGE_COND_MODEL, PipelineModels


@dataclass
class Conditioning:
    """What a flow model is conditioned on: `positive` is a `[B, T, C]` tensor (one image) or a
    `ConditionalVelocity` (several views); `negative` is the all-zero unconditional tensor."""

    positive: torch.Tensor | ConditionalVelocity
    negative: torch.Tensor


@torch.no_grad()
def image_features(models: PipelineModels, images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """DINOv3 tokens `[len(images), T, C]` of preprocessed images at `resolution`, on the compute device."""
    extractor = models.get(IMAGE_COND_MODEL)
    extractor.image_size = resolution
    with models.on_device(extractor):
        return extractor(list(images)).to(models.device)


def image_conditioning(
    models: PipelineModels, images: Sequence[Image.Image], resolution: int
) -> Conditioning:
    """Conditioning on `images` (one sample each) with zero tokens as the unconditional branch."""
    cond = image_features(models, images, resolution)
    return Conditioning(cond, torch.zeros_like(cond))


__all__ = ["Conditioning", "image_conditioning", "image_features"]
