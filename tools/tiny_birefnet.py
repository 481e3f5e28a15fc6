"""A tiny stand-in for BiRefNet / RMBG-2.0, loadable exactly like the real one.

`tools/make_tiny_models.py` copies this file into the tiny `briaai/RMBG-2.0` folder, whose
`config.json` `auto_map` points at it, so that
`AutoModelForImageSegmentation.from_pretrained(folder, trust_remote_code=True, local_files_only=True)`
builds it. Like BiRefNet, `forward(x [B, 3, H, W])` returns a list of mask logits whose last entry
is `[B, 1, H, W]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyBiRefNetConfig(PretrainedConfig):
    model_type = "tiny_birefnet"

    def __init__(self, hidden_channels: int = 8, downsample: int = 16, **kwargs) -> None:
        self.hidden_channels = hidden_channels
        self.downsample = downsample
        super().__init__(**kwargs)


class TinyBiRefNet(PreTrainedModel):
    config_class = TinyBiRefNetConfig
    base_model_prefix = "tiny_birefnet"

    def __init__(self, config: TinyBiRefNetConfig) -> None:
        super().__init__(config)
        c = config.hidden_channels
        self.encoder = nn.Conv2d(3, c, 3, padding=1)
        self.decoder = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Conv2d(c, 1, 1)

    def _init_weights(self, module: nn.Module) -> None:  # weights come from model.safetensors
        pass

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        h = F.avg_pool2d(x, self.config.downsample)
        h = F.gelu(self.encoder(h))
        h = F.gelu(self.decoder(h)) + h
        coarse = self.head(h)
        return [coarse, F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)]
