"""Normalisation layers that always compute in float32, whatever the activation dtype.

The flow models run their residual stream in bf16/fp16 but keep every normalisation (LayerNorm
statistics, q/k RMS norm) in float32 with float32 parameters, and round the result back to the
activation dtype. These classes implement exactly that contract.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm32(nn.LayerNorm):
    """`nn.LayerNorm` evaluated in float32; the output has the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        y = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return y.to(x.dtype)


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm over the head dimension with a learnt `[heads, head_dim]` gain.

    `y = x / max(||x||_2, 1e-12) * gamma * sqrt(head_dim)` on the last axis, computed in float32;
    the input's last two axes must be `[heads, head_dim]`.
    """

    def __init__(self, head_dim: int, num_heads: int) -> None:
        super().__init__()
        self.scale = head_dim**0.5
        self.gamma = nn.Parameter(torch.ones(num_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.normalize(x.float(), dim=-1) * self.gamma.float() * self.scale
        return y.to(x.dtype)
