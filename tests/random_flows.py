"""Small flow models with every parameter random, shared by the fast-path tests of the models and samplers."""

from __future__ import annotations

import torch

# A two-block flow with every feature of the real ones (RoPE, shared modulation, q/k RMS norms).
FLOW = dict(
    model_channels=64,
    cond_channels=32,
    num_blocks=2,
    num_heads=4,
    mlp_ratio=2.0,
    pe_mode="rope",
    share_mod=True,
    qk_rms_norm=True,
    qk_rms_norm_cross=True,
)


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (modulation and gains too), so that every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() < 2 else p.shape[-1] ** -0.5))
            if name.endswith("gamma") or name.endswith("norm2.weight"):
                p.add_(1.0)
    return model.eval()
