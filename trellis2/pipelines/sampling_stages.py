"""The sampling stages of TRELLIS.2 (spec §10): sparse structure, shape latent (direct or cascade),
texture latent, and decoding to meshes with PBR voxels.

Every stage draws its noise from the caller's CPU generator, in the official order, and runs its
networks through `PipelineModels.on_device`, so each visits the compute device only for its stage.
`fast` (see `trellis2.samplers.fast_path`) chooses how the samplers evaluate the flows: by default
the fast path on CUDA and the reference path on the CPU; `fast_path_reports` keeps, per stage, what
the last run's sampler did.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from o_voxel.asset import MeshWithVoxel

from ..modules.sparse.tensor import SparseTensor
from ..progress import CancelFlag, ProgressCallback, no_progress, raise_if_cancelled
from ..samplers import SAMPLER_CLASSES, FastPathReport, FastPathSetting
from .conditioning import Conditioning
from .pipeline_config import MODEL_KEYS, SAMPLER_KEYS, PipelineConfig, SamplerConfig
from .pipeline_models import PipelineModels

LATENT_RESOLUTION_DIVISOR = 16  # output resolution / latent grid size


def make_sampler(entry: SamplerConfig) -> Any:
    """The sampler a `pipeline.json` sampler entry names, built with its `args`."""
    if entry.name not in SAMPLER_CLASSES:
        raise ValueError(f"pipeline.json names an unknown sampler {entry.name!r}")
    return SAMPLER_CLASSES[entry.name](**entry.args)


def structure_coords(occupancy: torch.Tensor, resolution: int) -> torch.Tensor:
    """Occupied voxels `[N, 4]` int32 `(batch, x, y, z)` at `resolution` (lexicographic) of a boolean occupancy
    `[B, 1, R, R, R]` (R a multiple of `resolution`: a coarse voxel is occupied when any of its cells is)."""
    if occupancy.dim() != 5 or occupancy.shape[1] != 1 or len(set(occupancy.shape[2:])) != 1:
        raise ValueError(f"a sparse structure is a [B, 1, R, R, R] occupancy; got {list(occupancy.shape)}")
    size = occupancy.shape[2]
    if size % resolution:
        raise ValueError(f"a {size}^3 structure cannot be pooled to {resolution}^3")
    if size != resolution:
        ratio = size // resolution
        occupancy = F.max_pool3d(occupancy.float(), ratio, ratio, 0) > 0.5
    coords = torch.argwhere(occupancy)[:, [0, 2, 3, 4]].int()
    if coords.shape[0] == 0:
        raise RuntimeError("the sparse-structure stage found no occupied voxels; try another seed or image")
    return coords


class SamplingStages:
    """Stages 1-3 and decoding on the networks of `models`, with the samplers of `config`."""

    def __init__(self, config: PipelineConfig, models: PipelineModels, fast: FastPathSetting = None) -> None:
        self.config = config
        self.models = models
        self.device = models.device
        self.samplers = {key: make_sampler(getattr(config, key)) for key in SAMPLER_KEYS}
        self.fast = fast
        self.fast_path_reports: dict[str, FastPathReport] = {}

    def model(self, key: str) -> torch.nn.Module:
        """Checkpoint `key` of `pipeline.json`, loaded once and kept on the CPU between uses."""
        if key not in MODEL_KEYS:
            raise KeyError(key)
        return self.models.get(key)

    def _sample(
        self,
        sampler_key: str,
        model: torch.nn.Module,
        noise: Any,
        cond: Conditioning,
        params: dict[str, Any],
        stage: str,
        progress: ProgressCallback,
        cancel: CancelFlag | None,
        **kwargs: Any,
    ) -> Any:
        """One sampler run on the device; `params` override the sampler's `pipeline.json` params."""
        with self.models.on_device(model):
            out = self.samplers[sampler_key].sample(
                model,
                noise,
                cond.positive,
                cond.negative,
                progress=progress,
                stage=stage,
                cancel=cancel,
                fast=self.fast,
                **{**getattr(self.config, sampler_key).params, **params},
                **kwargs,
            )
        if out.fast_path is not None:
            self.fast_path_reports[stage] = out.fast_path
        return out.samples

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
    def sample_sparse_structure(
        self,
        cond: Conditioning,
        resolution: int,
        generator: torch.Generator,
        params: dict[str, Any],
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
        num_samples: int = 1,
    ) -> torch.Tensor:
        """Stage 1: occupied voxels `[N, 4]` int32 `(batch, x, y, z)` at `resolution`, lexicographic."""
        flow = self.model("sparse_structure_flow_model")
        r = flow.resolution
        noise = torch.randn(num_samples, flow.in_channels, r, r, r, generator=generator).to(self.device)
        z_s = self._sample(
            "sparse_structure_sampler", flow, noise, cond, params, "sparse_structure", progress, cancel
        )
        raise_if_cancelled(cancel)
        with self.models.on_device(self.model("sparse_structure_decoder")) as decoder:
            occupancy = decoder(z_s) > 0
        return structure_coords(occupancy, resolution)

    @torch.no_grad()
    def sample_shape_slat(
        self,
        cond: Conditioning,
        flow_key: str,
        coords: torch.Tensor,
        generator: torch.Generator,
        params: dict[str, Any],
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
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
        self,
        lr_cond: Conditioning,
        cond: Conditioning,
        coords: torch.Tensor,
        resolution: int,
        generator: torch.Generator,
        params: dict[str, Any],
        max_num_tokens: int,
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
        lr_resolution: int = 512,
    ) -> tuple[SparseTensor, int]:
        """Stage 2 as a cascade: 512 latent -> upsampled coords -> high-resolution latent.

        The output resolution drops from `resolution` in steps of 128 (not below 1024) until the
        high-resolution latent has fewer than `max_num_tokens` voxels.
        """
        slat = self.sample_shape_slat(
            lr_cond,
            "shape_slat_flow_model_512",
            coords,
            generator,
            params,
            progress,
            cancel,
            stage="shape_slat",
        )
        raise_if_cancelled(cancel)
        with self.models.on_device(self.model("shape_slat_decoder")) as decoder:
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
        slat = self.sample_shape_slat(
            cond,
            "shape_slat_flow_model_1024",
            quantized,
            generator,
            params,
            progress,
            cancel,
            stage="shape_slat_hr",
        )
        return slat, hr_resolution

    @torch.no_grad()
    def sample_tex_slat(
        self,
        cond: Conditioning,
        flow_key: str,
        shape_slat: SparseTensor,
        generator: torch.Generator,
        params: dict[str, Any],
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
    ) -> SparseTensor:
        """Stage 3: the (denormalised) texture latent on the shape latent's voxels."""
        flow = self.model(flow_key)
        shape_normalized = self._normalize(shape_slat, "shape_slat_normalization")
        channels = flow.in_channels - shape_normalized.feats.shape[1]
        noise = shape_normalized.replace(
            torch.randn(shape_normalized.feats.shape[0], channels, generator=generator).to(self.device)
        )
        slat = self._sample(
            "tex_slat_sampler",
            flow,
            noise,
            cond,
            params,
            "tex_slat",
            progress,
            cancel,
            concat_cond=shape_normalized,
        )
        return self._denormalize(slat, "tex_slat_normalization")

    @torch.no_grad()
    def decode_latent(
        self,
        shape_slat: SparseTensor,
        tex_slat: SparseTensor,
        resolution: int,
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
    ) -> list[MeshWithVoxel]:
        """Shape decoder -> meshes and subdivisions; texture decoder guided by them -> PBR voxels."""
        raise_if_cancelled(cancel)
        shape_decoder = self.model("shape_slat_decoder")
        shape_decoder.set_resolution(resolution)
        with self.models.on_device(shape_decoder):
            meshes, subs = shape_decoder(shape_slat, return_subs=True)
        progress("decode", 1, 2)
        raise_if_cancelled(cancel)
        with self.models.on_device(self.model("tex_slat_decoder")) as tex_decoder:
            voxels = tex_decoder(tex_slat, guide_subs=subs) * 0.5 + 0.5
        progress("decode", 2, 2)
        results = []
        for index, mesh in enumerate(meshes):
            sample = voxels[index]
            results.append(
                MeshWithVoxel(
                    vertices=mesh.vertices.float(),
                    faces=mesh.faces.int(),
                    coords=sample.coords[:, 1:].int(),
                    attrs=sample.feats.float(),
                    voxel_size=1.0 / resolution,
                    origin=torch.tensor([-0.5, -0.5, -0.5], device=sample.feats.device),
                )
            )
        return results


__all__ = ["LATENT_RESOLUTION_DIVISOR", "SamplingStages", "make_sampler"]
