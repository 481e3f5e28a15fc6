"""TRELLIS.2 image-to-3D (spec §10): image -> sparse structure -> shape latent -> texture latent -> mesh.

Loading reads the official `pipeline.json` and resolves every model reference to a local folder
(`model_paths`); checkpoints are loaded lazily, on the CPU, the first time a job needs them. With
low-VRAM execution (always on) each network visits the compute device only for its own stage, so
after `run` returns, fails or is cancelled no parameter remains on the GPU.

Noise comes from a private CPU generator seeded with `seed`, drawn in the official order
(sparse-structure noise, shape noise [, high-resolution shape noise], texture noise), so outputs
are reproducible and independent of the GPU and of other work in the process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ..modules.sparse.tensor import SparseTensor
from o_voxel.asset import MeshWithVoxel
from ..samplers import SAMPLER_CLASSES, ConditionalVelocity
from .image_loading import ImageInputError, has_real_alpha, normalize_image
from .model_paths import (
    ModelNotFoundError,
    locate_pipeline,
    resolve_checkpoint,
    resolve_model_folder,
)
from .pipeline_config import MODEL_KEYS, MODELS_FOR_TYPE, PIPELINE_TYPES, PipelineConfig
from .preprocess import preprocess_image as preprocess_to_square
from ..progress import CancelFlag, ProgressCallback, no_progress, raise_if_cancelled

PIPELINE_REPO = "microsoft/TRELLIS.2-4B"
SAMPLER_PARAM_KEYS = {"steps", "guidance_strength", "guidance_rescale", "guidance_interval", "rescale_t"}
LATENT_RESOLUTION_DIVISOR = 16  # output resolution / latent grid size


@dataclass
class Conditioning:
    """What a flow model is conditioned on: `positive` is a `[B, T, C]` tensor (one image) or a
    `ConditionalVelocity` (several views); `negative` is the all-zero unconditional tensor."""

    positive: torch.Tensor | ConditionalVelocity
    negative: torch.Tensor


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def check_sampler_params(stage: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Reject unknown keys and bad values with a message that names the stage and the field."""
    params = dict(params or {})
    unknown = set(params) - SAMPLER_PARAM_KEYS
    if unknown:
        raise ValueError(f"{stage}: unknown sampler parameter(s) {sorted(unknown)}; allowed: {sorted(SAMPLER_PARAM_KEYS)}")
    if "steps" in params:
        steps = params["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 500:
            raise ValueError(f"{stage}: steps must be an integer from 1 to 500, got {steps!r}")
    for key in ("guidance_strength", "guidance_rescale", "rescale_t"):
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], (int, float))):
            raise ValueError(f"{stage}: {key} must be a number, got {params[key]!r}")
    if "guidance_rescale" in params and not 0.0 <= params["guidance_rescale"] <= 1.0:
        raise ValueError(f"{stage}: guidance_rescale must be within [0, 1], got {params['guidance_rescale']}")
    if "rescale_t" in params and params["rescale_t"] <= 0:
        raise ValueError(f"{stage}: rescale_t must be positive, got {params['rescale_t']}")
    if "guidance_interval" in params:
        interval = params["guidance_interval"]
        if not isinstance(interval, (list, tuple)) or len(interval) != 2 or interval[0] > interval[1]:
            raise ValueError(f"{stage}: guidance_interval must be [low, high] with low <= high, got {interval!r}")
    return params


class Trellis2ImageTo3DPipeline:
    """The official TRELLIS.2 image-to-3D pipeline on local checkpoints, in pure PyTorch."""

    pin_memory = True  # keep the CPU copies of the weights in pinned memory when running on CUDA

    def __init__(
        self,
        config: PipelineConfig,
        pipeline_dir: Path,
        models_dir: Path | None,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config
        self.pipeline_dir = Path(pipeline_dir)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.device = torch.device(device) if device is not None else default_device()
        self.pipeline_repo = self._repo_name()
        self._models: dict[str, torch.nn.Module] = {}
        self._image_cond_model: torch.nn.Module | None = None
        self._rembg_model: torch.nn.Module | None = None
        self.samplers = {
            key: self._make_sampler(getattr(config, key))
            for key in ("sparse_structure_sampler", "shape_slat_sampler", "tex_slat_sampler")
        }

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path_or_models_dir: str | os.PathLike | None = None, device: torch.device | str | None = None
    ) -> Trellis2ImageTo3DPipeline:
        """Open a pipeline folder (with `pipeline.json`), a models folder holding
        `microsoft/TRELLIS.2-4B`, or that hub id inside `$GENESIS_MODELS_DIR` / `models/`."""
        pipeline_dir, models_dir = locate_pipeline(path_or_models_dir, PIPELINE_REPO)
        config = PipelineConfig.load(pipeline_dir / "pipeline.json")
        return cls(config, pipeline_dir, models_dir, device)

    def _repo_name(self) -> str:
        folder = self.pipeline_dir.resolve()
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            return folder.parent.parent.name[len("models--"):].replace("--", "/")
        return f"{folder.parent.name}/{folder.name}"

    @staticmethod
    def _make_sampler(entry) -> Any:
        if entry.name not in SAMPLER_CLASSES:
            raise ValueError(f"pipeline.json names an unknown sampler {entry.name!r}")
        return SAMPLER_CLASSES[entry.name](**entry.args)

    def checkpoint_path(self, key: str) -> Path:
        """Local checkpoint prefix for `pipeline.json` model `key` (raises `ModelNotFoundError`)."""
        if key not in self.config.models:
            raise ModelNotFoundError(
                f"{self.pipeline_repo}:{key}", self.pipeline_dir / "pipeline.json",
                f"pipeline.json has no '{key}' entry",
            )
        return resolve_checkpoint(self.config.models[key], self.pipeline_dir, self.models_dir, self.pipeline_repo)

    def model(self, key: str) -> torch.nn.Module:
        """Checkpoint `key` of `pipeline.json`, loaded once and kept on the CPU between uses."""
        if key not in self._models:
            if key not in MODEL_KEYS:
                raise KeyError(key)
            from ..models import from_pretrained

            self._models[key] = from_pretrained(str(self.checkpoint_path(key)), device="cpu").eval()
        return self._models[key]

    def image_cond_model(self) -> torch.nn.Module:
        if self._image_cond_model is None:
            from ..modules.image_feature_extractor import DinoV3FeatureExtractor

            folder = resolve_model_folder(self.config.image_cond_model, self.pipeline_dir, self.models_dir)
            self._image_cond_model = DinoV3FeatureExtractor(folder)
        return self._image_cond_model

    def rembg_model(self) -> torch.nn.Module:
        if self._rembg_model is None:
            from .background_removal import BiRefNet

            folder = resolve_model_folder(self.config.rembg_model, self.pipeline_dir, self.models_dir)
            self._rembg_model = BiRefNet(folder)
        return self._rembg_model

    def required_models(self, pipeline_type: str) -> list[str]:
        return list(MODELS_FOR_TYPE[pipeline_type])

    def load_models(self, pipeline_type: str | None = None) -> None:
        """Load (on the CPU) every network a pipeline type needs, so the first job does not wait for
        it; background removal stays lazy (only opaque images need it)."""
        pipeline_type = self.config.default_pipeline_type if pipeline_type is None else pipeline_type
        if pipeline_type not in PIPELINE_TYPES:
            raise ValueError(f"unknown pipeline_type {pipeline_type!r}; choose one of {', '.join(PIPELINE_TYPES)}")
        for key in self.required_models(pipeline_type):
            self.model(key)
        self.image_cond_model()

    # --- low-VRAM device management ----------------------------------------------------------
    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Give `module` device copies of its tensors for one stage; afterwards it points at its CPU
        tensors again (nothing is copied back: inference does not change weights).

        On CUDA the CPU tensors are pinned on the first visit, so every later visit is a fast
        asynchronous upload.
        """
        if self.device.type == "cpu":
            yield module
            return
        pin = self.pin_memory and self.device.type == "cuda"
        tensors = [t for t in (*module.parameters(), *module.buffers()) if t.device.type == "cpu"]
        saved: list[torch.Tensor] = []
        try:
            for tensor in tensors:
                data = tensor.data
                if pin and not data.is_pinned():
                    data = data.pin_memory()
                saved.append(data)
                tensor.data = data.to(self.device, non_blocking=True)
            yield module
        finally:
            for tensor, data in zip(tensors, saved, strict=False):  # `saved` is shorter after a failure
                tensor.data = data
            self.release_device_memory()

    def release_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def parameters_on_device(self) -> list[str]:
        """Names of loaded networks with any parameter off the CPU (empty after every `run`)."""
        loaded = dict(self._models)
        if self._image_cond_model is not None:
            loaded["image_cond_model"] = self._image_cond_model
        if self._rembg_model is not None:
            loaded["rembg_model"] = self._rembg_model
        return [name for name, m in loaded.items() if any(p.device.type != "cpu" for p in m.parameters())]

    # --- stages ------------------------------------------------------------------------------
    def preprocess_image(self, image: Image.Image) -> Image.Image:
        """Cut out, centre and premultiply (background removal only for opaque images)."""
        image = normalize_image(image)

        def remove_background(rgb: Image.Image) -> Image.Image:
            with self.on_device(self.rembg_model()) as rembg:
                return rembg(rgb)

        return preprocess_to_square(image, None if has_real_alpha(image) else remove_background)

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
        """DINOv3 tokens `[len(images), T, C]` at `resolution` on the compute device."""
        extractor = self.image_cond_model()
        extractor.image_size = resolution
        with self.on_device(extractor):
            return extractor(list(images)).to(self.device)

    def get_cond(self, images: Sequence[Image.Image], resolution: int) -> Conditioning:
        cond = self.image_features(images, resolution)
        return Conditioning(cond, torch.zeros_like(cond))

    def _sampler_params(self, key: str, overrides: dict[str, Any]) -> dict[str, Any]:
        return {**getattr(self.config, key).params, **overrides}

    def _sample(
        self, sampler_key: str, model: torch.nn.Module, noise: Any, cond: Conditioning, params: dict[str, Any],
        stage: str, progress: ProgressCallback, cancel: CancelFlag | None, **kwargs,
    ) -> Any:
        with self.on_device(model):
            return self.samplers[sampler_key].sample(
                model, noise, cond.positive, cond.negative, progress=progress, stage=stage, cancel=cancel,
                **self._sampler_params(sampler_key, params), **kwargs,
            ).samples

    @torch.no_grad()
    def sample_sparse_structure(
        self, cond: Conditioning, resolution: int, generator: torch.Generator, params: dict[str, Any],
        progress: ProgressCallback = no_progress, cancel: CancelFlag | None = None, num_samples: int = 1,
    ) -> torch.Tensor:
        """Stage 1: occupied voxels `[N, 4]` int32 `(batch, x, y, z)` at `resolution`, lexicographic."""
        flow = self.model("sparse_structure_flow_model")
        r = flow.resolution
        noise = torch.randn(num_samples, flow.in_channels, r, r, r, generator=generator).to(self.device)
        z_s = self._sample("sparse_structure_sampler", flow, noise, cond, params, "sparse_structure",
                           progress, cancel)
        raise_if_cancelled(cancel)
        with self.on_device(self.model("sparse_structure_decoder")) as decoder:
            occupancy = decoder(z_s) > 0
        if occupancy.shape[2] != resolution:
            ratio = occupancy.shape[2] // resolution
            occupancy = F.max_pool3d(occupancy.float(), ratio, ratio, 0) > 0.5
        coords = torch.argwhere(occupancy)[:, [0, 2, 3, 4]].int()
        if coords.shape[0] == 0:
            raise RuntimeError("the sparse-structure stage found no occupied voxels; try another seed or image")
        return coords

    def _denormalize(self, slat: SparseTensor, key: str) -> SparseTensor:
        norm = getattr(self.config, key)
        mean = torch.tensor(norm.mean, device=slat.device)[None]
        std = torch.tensor(norm.std, device=slat.device)[None]
        return slat * std + mean

    def _normalize(self, slat: SparseTensor, key: str) -> SparseTensor:
        norm = getattr(self.config, key)
        mean = torch.tensor(norm.mean, device=slat.device)[None]
        std = torch.tensor(norm.std, device=slat.device)[None]
        return (slat - mean) / std

    @torch.no_grad()
    def sample_shape_slat(
        self, cond: Conditioning, flow_key: str, coords: torch.Tensor, generator: torch.Generator,
        params: dict[str, Any], progress: ProgressCallback = no_progress, cancel: CancelFlag | None = None,
        stage: str = "shape_slat",
    ) -> SparseTensor:
        """Stage 2: the (denormalised) shape latent on `coords`."""
        flow = self.model(flow_key)
        noise = SparseTensor(
            torch.randn(coords.shape[0], flow.in_channels, generator=generator).to(self.device),
            coords.to(self.device),
        )
        slat = self._sample("shape_slat_sampler", flow, noise, cond, params, stage, progress, cancel)
        return self._denormalize(slat, "shape_slat_normalization")

    @torch.no_grad()
    def sample_shape_slat_cascade(
        self, lr_cond: Conditioning, cond: Conditioning, coords: torch.Tensor, resolution: int,
        generator: torch.Generator, params: dict[str, Any], max_num_tokens: int,
        progress: ProgressCallback = no_progress, cancel: CancelFlag | None = None, lr_resolution: int = 512,
    ) -> tuple[SparseTensor, int]:
        """Stage 2 as a cascade: 512 latent -> upsampled coords -> high-resolution latent."""
        slat = self.sample_shape_slat(lr_cond, "shape_slat_flow_model_512", coords, generator, params,
                                      progress, cancel, stage="shape_slat")
        raise_if_cancelled(cancel)
        with self.on_device(self.model("shape_slat_decoder")) as decoder:
            hr_coords = decoder.upsample(slat, upsample_times=4)
        hr_resolution = resolution
        while True:
            grid = hr_resolution // LATENT_RESOLUTION_DIVISOR
            cells = ((hr_coords[:, 1:] + 0.5) / lr_resolution * grid).int()
            quantized = torch.cat([hr_coords[:, :1].int(), cells], dim=1).unique(dim=0)
            if quantized.shape[0] < max_num_tokens or hr_resolution <= 1024:
                break
            hr_resolution -= 128
        raise_if_cancelled(cancel)
        slat = self.sample_shape_slat(cond, "shape_slat_flow_model_1024", quantized, generator, params,
                                      progress, cancel, stage="shape_slat_hr")
        return slat, hr_resolution

    @torch.no_grad()
    def sample_tex_slat(
        self, cond: Conditioning, flow_key: str, shape_slat: SparseTensor, generator: torch.Generator,
        params: dict[str, Any], progress: ProgressCallback = no_progress, cancel: CancelFlag | None = None,
    ) -> SparseTensor:
        """Stage 3: the (denormalised) texture latent on the shape latent's voxels."""
        flow = self.model(flow_key)
        shape_normalized = self._normalize(shape_slat, "shape_slat_normalization")
        channels = flow.in_channels - shape_normalized.feats.shape[1]
        noise = shape_normalized.replace(
            torch.randn(shape_normalized.feats.shape[0], channels, generator=generator).to(self.device)
        )
        slat = self._sample("tex_slat_sampler", flow, noise, cond, params, "tex_slat", progress, cancel,
                            concat_cond=shape_normalized)
        return self._denormalize(slat, "tex_slat_normalization")

    @torch.no_grad()
    def decode_latent(
        self, shape_slat: SparseTensor, tex_slat: SparseTensor, resolution: int,
        progress: ProgressCallback = no_progress, cancel: CancelFlag | None = None,
    ) -> list[MeshWithVoxel]:
        """Shape decoder -> meshes and subdivisions; texture decoder guided by them -> PBR voxels."""
        raise_if_cancelled(cancel)
        shape_decoder = self.model("shape_slat_decoder")
        shape_decoder.set_resolution(resolution)
        with self.on_device(shape_decoder):
            meshes, subs = shape_decoder(shape_slat, return_subs=True)
        progress("decode", 1, 2)
        raise_if_cancelled(cancel)
        with self.on_device(self.model("tex_slat_decoder")) as tex_decoder:
            voxels = tex_decoder(tex_slat, guide_subs=subs) * 0.5 + 0.5
        progress("decode", 2, 2)
        results = []
        for index, mesh in enumerate(meshes):
            sample = voxels[index]
            results.append(MeshWithVoxel(
                vertices=mesh.vertices.float(),
                faces=mesh.faces.int(),
                coords=sample.coords[:, 1:].int(),
                attrs=sample.feats.float(),
                voxel_size=1.0 / resolution,
                origin=torch.tensor([-0.5, -0.5, -0.5], device=sample.feats.device),
            ))
        return results

    # --- the whole run -----------------------------------------------------------------------
    def _check_run_args(self, pipeline_type: str | None, seed: int, max_num_tokens: int) -> str:
        pipeline_type = self.config.default_pipeline_type if pipeline_type is None else str(pipeline_type)
        if pipeline_type not in PIPELINE_TYPES:
            raise ValueError(f"unknown pipeline_type {pipeline_type!r}; choose one of {', '.join(PIPELINE_TYPES)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(max_num_tokens, bool) or not isinstance(max_num_tokens, int) or max_num_tokens < 1:
            raise ValueError(f"max_num_tokens must be a positive integer, got {max_num_tokens!r}")
        for key in self.required_models(pipeline_type):
            self.checkpoint_path(key)  # fail early, naming the missing checkpoint
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
    ) -> list[MeshWithVoxel]:
        """Stages 1-3 and decoding for conditions given by `conditioning(resolution)`."""
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
            coords = self.sample_sparse_structure(cond_512, ss_resolution, generator, ss_params, progress, cancel)
            raise_if_cancelled(cancel)
            if pipeline_type == "512":
                shape_slat = self.sample_shape_slat(cond_512, "shape_slat_flow_model_512", coords, generator,
                                                    shape_params, progress, cancel)
                resolution, tex_cond, tex_key = 512, cond_512, "tex_slat_flow_model_512"
            elif pipeline_type == "1024":
                shape_slat = self.sample_shape_slat(cond_1024, "shape_slat_flow_model_1024", coords, generator,
                                                    shape_params, progress, cancel)
                resolution, tex_cond, tex_key = 1024, cond_1024, "tex_slat_flow_model_1024"
            else:
                target = 1024 if pipeline_type == "1024_cascade" else 1536
                shape_slat, resolution = self.sample_shape_slat_cascade(
                    cond_512, cond_1024, coords, target, generator, shape_params, max_num_tokens, progress, cancel
                )
                tex_cond, tex_key = cond_1024, "tex_slat_flow_model_1024"
            raise_if_cancelled(cancel)
            tex_slat = self.sample_tex_slat(tex_cond, tex_key, shape_slat, generator, tex_params, progress, cancel)
            self.release_device_memory()
            return self.decode_latent(shape_slat, tex_slat, resolution, progress, cancel)
        finally:
            self.release_device_memory()

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
    ) -> list[MeshWithVoxel]:
        """Generate one textured asset from one image (see the module docstring)."""
        progress = progress or no_progress
        if not isinstance(image, Image.Image):
            raise ImageInputError(f"expected a PIL image, got {type(image).__name__}")
        pipeline_type = self._check_run_args(pipeline_type, seed, max_num_tokens)
        raise_if_cancelled(cancel)
        image = self.preprocess_image(image) if preprocess_image else normalize_image(image).convert("RGB")
        progress("preprocess", 1, 1)
        return self.generate(
            lambda resolution: self.get_cond([image], resolution), seed, pipeline_type,
            sparse_structure_sampler_params or {}, shape_slat_sampler_params or {}, tex_slat_sampler_params or {},
            max_num_tokens, progress, cancel,
        )


__all__ = ["Conditioning", "Trellis2ImageTo3DPipeline", "check_sampler_params"]
