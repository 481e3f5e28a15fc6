"""TRELLIS.2 image-to-3D (spec §10): image -> sparse structure -> shape latent -> texture latent -> mesh.

The public pipeline class. Loading reads the official `pipeline.json` (`pipeline_config`) and
resolves every model reference to a local folder (`model_paths`); networks load lazily, on the CPU,
the first time a job needs them, and with low-VRAM execution (always on) each visits the compute
device only for its own stage (`pipeline_models`), so after `run` returns, fails or is cancelled no
parameter remains on the GPU. Images become DINOv3 conditioning (`conditioning`); the stages
themselves are in `sampling_stages`.

Noise comes from a private CPU generator seeded with `seed`, drawn in the official order
(sparse-structure noise, shape noise [, high-resolution shape noise], texture noise), so outputs
are reproducible and independent of the GPU and of other work in the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from o_voxel.asset import MeshWithVoxel

from ..progress import CancelFlag, ProgressCallback, no_progress, raise_if_cancelled
from ..samplers import FastPathSetting
from .conditioning import Conditioning, image_conditioning, image_features
from .image_loading import ImageInputError, has_real_alpha, normalize_image
from .model_paths import locate_pipeline
from .pipeline_config import (
    MODELS_FOR_TYPE,
    PIPELINE_REPO,
    PipelineConfig,
    check_pipeline_type,
    check_run_arguments,
    check_sampler_params,
)
from .pipeline_models import IMAGE_COND_MODEL, REMBG_MODEL, PipelineModels
from .preprocess import preprocess_image as preprocess_to_square
from .sampling_stages import SamplingStages, structure_coords


class Trellis2ImageTo3DPipeline(SamplingStages):
    """The official TRELLIS.2 image-to-3D pipeline on local checkpoints, in pure PyTorch.

    `missing_model_hint` ends the message of every `ModelNotFoundError` (see there), e.g. how the
    calling application downloads models.
    """

    def __init__(
        self,
        config: PipelineConfig,
        pipeline_dir: Path | str,
        models_dir: Path | str | None,
        device: torch.device | str | None = None,
        missing_model_hint: str = "",
        fast: FastPathSetting = None,
    ) -> None:
        super().__init__(
            config, PipelineModels(config, pipeline_dir, models_dir, device, missing_model_hint), fast
        )
        self.pipeline_dir = self.models.pipeline_dir
        self.models_dir = self.models.models_dir
        self.pipeline_repo = self.models.pipeline_repo

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: torch.device | str | None = None,
        missing_model_hint: str = "",
        fast: FastPathSetting = None,
    ) -> Trellis2ImageTo3DPipeline:
        """Open a pipeline folder (with `pipeline.json`) or a models folder holding `microsoft/TRELLIS.2-4B`.

        `fast`: how the flows are evaluated (`trellis2.samplers.fast_path.resolve_fast_path`); the
        default runs the fast path on CUDA and the reference path on the CPU."""
        pipeline_dir, models_dir = locate_pipeline(path, PIPELINE_REPO, missing_model_hint)
        config = PipelineConfig.load(pipeline_dir / "pipeline.json")
        return cls(config, pipeline_dir, models_dir, device, missing_model_hint, fast)

    # --- the networks ------------------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        """Local checkpoint prefix for `pipeline.json` model `key` (raises `ModelNotFoundError`)."""
        return self.models.checkpoint_path(key)

    def required_models(self, pipeline_type: str) -> list[str]:
        """The `pipeline.json` checkpoints that `pipeline_type` samples and decodes with."""
        return list(MODELS_FOR_TYPE[pipeline_type])

    def load_models(self, pipeline_type: str | None = None) -> None:
        """Load (on the CPU) every network a pipeline type needs, so the first job does not wait for
        it; background removal stays lazy (only opaque images need it)."""
        pipeline_type = check_pipeline_type(pipeline_type, self.config.default_pipeline_type)
        for key in self.required_models(pipeline_type):
            self.models.get(key)
        self.image_cond_model()

    def image_cond_model(self) -> torch.nn.Module:
        """The DINOv3 feature extractor (loaded on first use)."""
        return self.models.get(IMAGE_COND_MODEL)

    def rembg_model(self) -> torch.nn.Module:
        """The BiRefNet background remover (loaded on first use: only opaque images need it)."""
        return self.models.get(REMBG_MODEL)

    def parameters_on_device(self) -> list[str]:
        """Names of loaded networks with any parameter off the CPU (empty after every `run`)."""
        return self.models.parameters_on_device()

    # --- images ------------------------------------------------------------------------------
    def preprocess_image(self, image: Image.Image) -> Image.Image:
        """Cut out, centre and premultiply (background removal only for opaque images)."""
        image = normalize_image(image)

        def remove_background(rgb: Image.Image) -> Image.Image:
            with self.models.on_device(self.rembg_model()) as rembg:
                return rembg(rgb)

        return preprocess_to_square(image, None if has_real_alpha(image) else remove_background)

    def image_features(self, images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
        """DINOv3 tokens `[len(images), T, C]` at `resolution` on the compute device."""
        return image_features(self.models, images, resolution)

    def get_cond(self, images: Sequence[Image.Image], resolution: int) -> Conditioning:
        """Conditioning on preprocessed `images` (one sample each)."""
        return image_conditioning(self.models, images, resolution)

    # --- the whole run -----------------------------------------------------------------------
    def _check_run_args(self, pipeline_type: str | None, seed: int, max_num_tokens: int) -> str:
        pipeline_type = check_pipeline_type(pipeline_type, self.config.default_pipeline_type)
        check_run_arguments(seed, max_num_tokens)
        self.models.require(self.required_models(pipeline_type))  # fail early, naming the missing checkpoint
        return pipeline_type

    def generate(
        self,
        conditioning: Callable[[int], Conditioning],
        seed: int,
        pipeline_type: str,
        sparse_structure_sampler_params: dict[str, Any],
        shape_slat_sampler_params: dict[str, Any],
        tex_slat_sampler_params: dict[str, Any],
        max_num_tokens: int,
        progress: ProgressCallback,
        cancel: CancelFlag | None,
        structure: torch.Tensor | None = None,
    ) -> list[MeshWithVoxel]:
        """Stages 1-3 and decoding for conditions given by `conditioning(resolution)`. A given `structure`
        (a boolean occupancy `[R, R, R]` in the pipeline's frame, R a multiple of the stage's resolution, e.g.
        a Fresnel draft's 64^3) takes the place of stage 1: its voxels are the sparse structure."""
        ss_params = check_sampler_params("sparse_structure_sampler_params", sparse_structure_sampler_params)
        shape_params = check_sampler_params("shape_slat_sampler_params", shape_slat_sampler_params)
        tex_params = check_sampler_params("tex_slat_sampler_params", tex_slat_sampler_params)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        try:
            raise_if_cancelled(cancel)
            cond_512 = conditioning(512)
            progress("conditioning", 1, 1 if pipeline_type == "512" else 2)
            cond_1024 = None
            if pipeline_type != "512":
                raise_if_cancelled(cancel)
                cond_1024 = conditioning(1024)
                progress("conditioning", 2, 2)
            ss_resolution = 64 if pipeline_type == "1024" else 32
            if structure is not None:
                coords = structure_coords(structure.bool()[None, None].to(self.device), ss_resolution)
                progress("sparse_structure", 1, 1)
            else:
                coords = self.sample_sparse_structure(
                    cond_512, ss_resolution, generator, ss_params, progress, cancel
                )
            raise_if_cancelled(cancel)
            if pipeline_type == "512":
                shape_slat = self.sample_shape_slat(
                    cond_512, "shape_slat_flow_model_512", coords, generator, shape_params, progress, cancel
                )
                resolution, tex_cond, tex_key = 512, cond_512, "tex_slat_flow_model_512"
            elif pipeline_type == "1024":
                shape_slat = self.sample_shape_slat(
                    cond_1024, "shape_slat_flow_model_1024", coords, generator, shape_params, progress, cancel
                )
                resolution, tex_cond, tex_key = 1024, cond_1024, "tex_slat_flow_model_1024"
            else:
                target = 1024 if pipeline_type == "1024_cascade" else 1536
                shape_slat, resolution = self.sample_shape_slat_cascade(
                    cond_512,
                    cond_1024,
                    coords,
                    target,
                    generator,
                    shape_params,
                    max_num_tokens,
                    progress,
                    cancel,
                )
                tex_cond, tex_key = cond_1024, "tex_slat_flow_model_1024"
            raise_if_cancelled(cancel)
            tex_slat = self.sample_tex_slat(
                tex_cond, tex_key, shape_slat, generator, tex_params, progress, cancel
            )
            self.models.release_device_memory()
            return self.decode_latent(shape_slat, tex_slat, resolution, progress, cancel)
        finally:
            self.models.release_device_memory()

    def run(
        self,
        image: Image.Image,
        seed: int = 42,
        pipeline_type: str | None = None,
        sparse_structure_sampler_params: dict[str, Any] | None = None,
        shape_slat_sampler_params: dict[str, Any] | None = None,
        tex_slat_sampler_params: dict[str, Any] | None = None,
        max_num_tokens: int = 49152,
        preprocess_image: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        structure: torch.Tensor | None = None,
    ) -> list[MeshWithVoxel]:
        """Generate one textured asset from one image (see the module docstring); `structure` as in
        `generate`."""
        progress = progress or no_progress
        if not isinstance(image, Image.Image):
            raise ImageInputError(f"expected a PIL image, got {type(image).__name__}")
        pipeline_type = self._check_run_args(pipeline_type, seed, max_num_tokens)
        raise_if_cancelled(cancel)
        image = self.preprocess_image(image) if preprocess_image else normalize_image(image).convert("RGB")
        progress("preprocess", 1, 1)
        return self.generate(
            lambda resolution: self.get_cond([image], resolution),
            seed,
            pipeline_type,
            sparse_structure_sampler_params or {},
            shape_slat_sampler_params or {},
            tex_slat_sampler_params or {},
            max_num_tokens,
            progress,
            cancel,
            structure,
        )


__all__ = ["Conditioning", "Trellis2ImageTo3DPipeline"]
