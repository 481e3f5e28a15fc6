"""FresnelNet: one image -> occupancy, PBR attributes and camera elevation, in a single forward pass.

A 2D convolutional encoder makes a feature pyramid of the object crop. A 3D convolutional decoder runs from
a coarse grid to the fine one; at every level the image features of the same resolution are *lifted* into
the grid — each voxel receives the features of the pixel it lies behind (the grid's x and z are the
image's columns and rows, y is depth) plus a learned embedding of its depth — so silhouettes and visible
detail stay aligned with the image, and the 3D layers learn depth and the unseen back. A small head on the
pooled image features predicts the camera's elevation, which the engine uses to stand the object upright.

Two optional additions (`FresnelConfig.top_down`, `depth_lifting`; off in the bundled checkpoint): a top-down
path gives each image level the features of the coarser ones (upsampled, through a 1x1 convolution), so that
fine levels see the whole object; and each level's features also predict, per pixel, a distribution over the
level's depth cells, and a second projection of them is placed along the pixel's ray by it, so that a level
can put what it sees at a depth instead of along the whole ray. Both enter through convolutions that start at
zero.

A network configured with a noise input (`FresnelConfig.noise_channels`; off in the bundled checkpoint) also
takes TRELLIS.2's sparse-structure noise (`structure_noise`), projected by a 1x1x1 convolution and added to
the 3D level of its size. The projection starts at zero, so a network initialised from a checkpoint without
the input computes exactly what that checkpoint does until it has learned to use the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTRIBUTE_CHANNELS, FresnelConfig


@dataclass
class FresnelOutput:
    occupancy_logits: torch.Tensor  # [B, G, G, G] (x, y, z)
    attribute_logits: torch.Tensor  # [B, 6, G, G, G]
    elevation: torch.Tensor  # [B] radians

    @property
    def attributes(self) -> torch.Tensor:
        return torch.sigmoid(self.attribute_logits)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU around a skip connection (2D or 3D)."""

    def __init__(
        self, channels: int, groups: int, dims: int, out_channels: int | None = None, stride: int = 1
    ) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        out = out_channels or channels
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = conv(channels, out, 3, stride=stride, padding=1)
        self.norm2 = nn.GroupNorm(groups, out)
        self.conv2 = conv(out, out, 3, padding=1)
        self.skip = (
            conv(channels, out, 1, stride=stride) if (out != channels or stride != 1) else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def lift(features: torch.Tensor) -> torch.Tensor:
    """Image features `[B, C, H, W]` (rows top to bottom) -> grid `[B, C, W, 1, H]` (x, depth, z up)."""
    return features.flip(2).transpose(2, 3).unsqueeze(3)


def structure_noise(seeds: list[int], config: FresnelConfig) -> torch.Tensor:
    """`[B, C, R, R, R]`: for each seed, the initial noise TRELLIS.2's sparse-structure flow starts from —
    the first draw of a CPU generator seeded with the seed (`trellis2.pipelines.sampling_stages`
    `sample_sparse_structure`), of `config.noise_channels` channels on a `config.noise_resolution` grid."""
    r = config.noise_resolution
    return torch.stack(
        [
            torch.randn(1, config.noise_channels, r, r, r, generator=torch.Generator().manual_seed(seed))[0]
            for seed in seeds
        ]
    )


class FresnelNet(nn.Module):
    def __init__(self, config: FresnelConfig) -> None:
        super().__init__()
        self.config = config
        enc, dec, g = config.encoder_channels, config.decoder_channels, config.groups
        self.stem = nn.Conv2d(4, enc[0], 3, padding=1)
        self.encoder = nn.ModuleList(
            ResBlock(enc[max(i - 1, 0)], g, dims=2, out_channels=enc[i], stride=2) for i in range(len(enc))
        )
        self.lift_proj = nn.ModuleList(nn.Conv2d(enc[-1 - i], dec[i], 1) for i in range(len(dec)))
        size = config.coarse_grid
        self.depth_embed = nn.ParameterList()
        for i, c in enumerate(dec):
            self.depth_embed.append(nn.Parameter(torch.randn(c, size * 2**i) * 0.02))
        self.up = nn.ModuleList(nn.Conv3d(dec[i - 1], dec[i], 1) for i in range(1, len(dec)))
        self.levels = nn.ModuleList(
            nn.Sequential(*(ResBlock(c, g, dims=3) for _ in range(n)))
            for c, n in zip(dec, config.decoder_blocks, strict=True)
        )
        self.noise_proj = (
            nn.Conv3d(config.noise_channels, dec[config.noise_level], 1, bias=False)
            if config.noise_level is not None
            else None
        )
        if self.noise_proj is not None:
            nn.init.zeros_(self.noise_proj.weight)
        self.top_down = (
            nn.ModuleList(nn.Conv2d(enc[i + 1], enc[i], 1) for i in range(len(enc) - 1))
            if config.top_down
            else None
        )
        self.depth_logits = self.depth_proj = None
        if config.depth_lifting:
            self.depth_logits = nn.ModuleList(nn.Conv2d(enc[-1 - i], size * 2**i, 1) for i in range(len(dec)))
            self.depth_proj = nn.ModuleList(nn.Conv2d(enc[-1 - i], dec[i], 1) for i in range(len(dec)))
        for layer in [*(self.top_down or []), *(self.depth_proj or [])]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.out_norm = nn.GroupNorm(g, dec[-1])
        self.head = nn.Conv3d(dec[-1], 1 + ATTRIBUTE_CHANNELS, 1)
        self.elevation_head = nn.Sequential(nn.Linear(enc[-1], 128), nn.SiLU(), nn.Linear(128, 1))

    def forward(self, images: torch.Tensor, noise: torch.Tensor | None = None) -> FresnelOutput:
        """`images [B, 4, S, S]` (premultiplied RGB + alpha in [0, 1], as `crop_to_object` makes them);
        `noise [B, C, R, R, R]` (grid axes x, y, z) for a network with a noise input, else None."""
        if (noise is None) != (self.noise_proj is None):
            raise ValueError(
                "this Fresnel network takes the structure noise as its second input"
                if noise is None
                else "this Fresnel network has no noise input"
            )
        x = self.stem(images * 2 - 1)
        pyramid = []
        for block in self.encoder:
            x = block(x)
            pyramid.append(x)
        elevation = torch.tanh(self.elevation_head(x.mean(dim=(2, 3)))[:, 0]) * (math.pi / 2)
        if self.top_down is not None:
            for i in reversed(range(len(pyramid) - 1)):
                coarser = F.interpolate(pyramid[i + 1], scale_factor=2, mode="nearest")
                pyramid[i] = pyramid[i] + self.top_down[i](coarser)
        volume = None
        for i, level in enumerate(self.levels):
            features = pyramid[-1 - i]
            lifted = lift(self.lift_proj[i](features)) + self.depth_embed[i][None, :, None, :, None]
            if self.depth_proj is not None:
                lifted = lifted + self.place_along_rays(i, features)
            if volume is None:
                volume = lifted
            else:
                volume = self.up[i - 1](
                    F.interpolate(volume, scale_factor=2, mode="trilinear", align_corners=False)
                )
                volume = volume + lifted
            if i == self.config.noise_level:
                volume = volume + self.noise_proj(noise.to(volume.dtype))
            volume = level(volume)
        out = self.head(F.silu(self.out_norm(volume)))
        return FresnelOutput(out[:, 0], out[:, 1:], elevation)

    def place_along_rays(self, level: int, features: torch.Tensor) -> torch.Tensor:
        """`[B, C, W, D, H]`: level `level`'s second projection of the image `features [B, Cin, H, W]`, spread
        along each pixel's ray by the pixel's predicted depth distribution (times the `D` depth cells, so an
        even distribution gives the plain lifting's magnitude)."""
        weights = torch.softmax(self.depth_logits[level](features).float(), dim=1).to(features.dtype)
        depth = weights.shape[1]
        along = lift(weights).permute(0, 3, 2, 1, 4)  # [B, 1, W, D, H]
        return lift(self.depth_proj[level](features)) * (along * depth)
