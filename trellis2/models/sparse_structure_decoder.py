"""`SparseStructureDecoder`: dense 3D conv decoder from the sparse-structure latent to occupancy logits.

TRELLIS-image-large `ss_dec_conv3d_16l8_fp16`: `[B, 8, 16, 16, 16]` latent -> `[B, 1, 64, 64, 64]`
logits (the pipeline keeps `logits > 0`). `input_layer` conv -> `middle_block` res blocks -> per level
res blocks and (but the last) a conv + `pixel_shuffle_3d` up block -> LayerNorm, SiLU, conv. With
`use_fp16` the convs of `middle_block` and `blocks` hold fp16 weights and run in fp16; norms compute
in fp32; `input_layer` and `out_layer` stay fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sparse_unet_vae_decoder import cast_matmul_layers


class ChannelLayerNorm32(nn.LayerNorm):
    """LayerNorm over the channel axis of `[B, C, *spatial]`, computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.movedim(1, -1).float()
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        h = F.layer_norm(h, self.normalized_shape, weight, bias, self.eps)
        return h.movedim(-1, 1).to(x.dtype)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def norm_layer(norm_type: str, channels: int) -> nn.Module:
    if norm_type == "layer":
        return ChannelLayerNorm32(channels, eps=1e-5)
    if norm_type == "group":
        return GroupNorm32(32, channels)
    raise ValueError(f"unsupported norm_type {norm_type!r}; use 'layer' or 'group'")


def pixel_shuffle_3d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`[B, C * f^3, X, Y, Z] -> [B, C, fX, fY, fZ]`; channel `c*f^3 + i*f^2 + j*f + k` -> offset (i, j, k)."""
    b, c, sx, sy, sz = x.shape
    co = c // factor**3
    x = x.reshape(b, co, factor, factor, factor, sx, sy, sz)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, co, sx * factor, sy * factor, sz * factor)


class ResBlock3d(nn.Module):
    """`x + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))` (1x1x1 skip conv if the width changes)."""

    def __init__(self, channels: int, out_channels: int | None = None, norm_type: str = "layer") -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.norm1 = norm_layer(norm_type, channels)
        self.norm2 = norm_layer(norm_type, out_channels)
        self.conv1 = nn.Conv3d(channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip_connection = (
            nn.Conv3d(channels, out_channels, 1) if channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip_connection(x)


class UpsampleBlock3d(nn.Module):
    """Conv to `8 * Co` channels, then `pixel_shuffle_3d(., 2)`."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "conv") -> None:
        super().__init__()
        if mode != "conv":
            raise ValueError(f"unsupported up-sampling mode {mode!r}; the released decoder uses 'conv'")
        self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x), 2)


class SparseStructureDecoder(nn.Module):
    """Dense occupancy decoder; `forward(x)` maps `[B, latent, R, R, R]` to `[B, out, 4R, 4R, 4R]` logits."""

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        channels: list[int],
        num_res_blocks_middle: int = 2,
        norm_type: str = "layer",
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.latent_channels = latent_channels
        self.num_res_blocks = num_res_blocks
        self.channels = list(channels)
        self.num_res_blocks_middle = num_res_blocks_middle
        self.norm_type = norm_type
        self.use_fp16 = use_fp16
        self.dtype = torch.float16 if use_fp16 else torch.float32

        self.input_layer = nn.Conv3d(latent_channels, channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(
            *(ResBlock3d(channels[0], norm_type=norm_type) for _ in range(num_res_blocks_middle))
        )
        blocks: list[nn.Module] = []
        for i, ch in enumerate(channels):
            blocks.extend(ResBlock3d(ch, norm_type=norm_type) for _ in range(num_res_blocks))
            if i < len(channels) - 1:
                blocks.append(UpsampleBlock3d(ch, channels[i + 1]))
        self.blocks = nn.ModuleList(blocks)
        self.out_layer = nn.Sequential(
            norm_layer(norm_type, channels[-1]),
            nn.SiLU(),
            nn.Conv3d(channels[-1], out_channels, 3, padding=1),
        )
        if use_fp16:
            self.convert_to_fp16()

    def convert_to_fp16(self) -> None:
        """fp16 weights for the convs of `middle_block` and `blocks` (norms and in/out layers stay fp32)."""
        cast_matmul_layers(self.blocks, torch.float16)
        cast_matmul_layers(self.middle_block, torch.float16)
        self.use_fp16, self.dtype = True, torch.float16

    def convert_to_fp32(self) -> None:
        cast_matmul_layers(self.blocks, torch.float32)
        cast_matmul_layers(self.middle_block, torch.float32)
        self.use_fp16, self.dtype = False, torch.float32

    @property
    def device(self) -> torch.device:
        return self.input_layer.weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.latent_channels:
            raise ValueError(f"latent must be [B, {self.latent_channels}, X, Y, Z], got {tuple(x.shape)}")
        h = self.input_layer(x).type(self.dtype)
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        h = h.type(x.dtype)
        return self.out_layer(h)
