"""`SparseStructureFlowModel`: the stage-1 dense DiT that denoises the `[B, 8, 16, 16, 16]` structure latent."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..modules.rope import RotaryPositionEmbedder
from ..modules.transformer import FastPathUnsupported, FlowTransformer


class SparseStructureFlowModel(FlowTransformer):
    """Dense flow transformer over the `R^3` latent grid; one token per voxel in `x*R*R + y*R + z` order.

    Constructor arguments are those of the official checkpoint JSON. `rope_phases` is a derived buffer
    (complex64 `[R^3, head_dim / 2]`), computed here and never read from or written to a checkpoint.
    """

    derived_buffers: tuple[str, ...] = ("rope_phases",)

    def __init__(
        self,
        resolution: int,
        in_channels: int,
        model_channels: int,
        cond_channels: int,
        out_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4,
        pe_mode: str = "ape",
        rope_freq: tuple[float, float] = (1.0, 10000.0),
        dtype: str = "float32",
        use_checkpoint: bool = False,
        share_mod: bool = False,
        initialization: str = "vanilla",
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
        **kwargs,
    ) -> None:
        # use_checkpoint / initialization only matter for training; extra kwargs are ignored as officially.
        super().__init__(
            in_channels,
            model_channels,
            cond_channels,
            out_channels,
            num_blocks,
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            mlp_ratio=mlp_ratio,
            pe_mode=pe_mode,
            rope_freq=rope_freq,
            dtype=dtype,
            share_mod=share_mod,
            qk_rms_norm=qk_rms_norm,
            qk_rms_norm_cross=qk_rms_norm_cross,
        )
        self.resolution = resolution
        # The official dense model builds its embedder with the default frequencies, whatever rope_freq says.
        self.rope = RotaryPositionEmbedder(self.head_dim)
        self.register_buffer("rope_phases", self.rope.grid_phases(resolution), persistent=False)

    def reset_derived_buffers(self) -> None:
        """Recompute `rope_phases` on the model's device (after loading onto `meta`/`to_empty`)."""
        self.rope_phases = self.rope.grid_phases(self.resolution, device=self.device)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """`x [B, in_channels, R, R, R]`, `t [B]` (1000-scaled), `cond [B, T, cond_channels]` -> float32
        `[B, out_channels, R, R, R]`."""
        r = self.resolution
        if x.dim() != 5 or tuple(x.shape[1:]) != (self.in_channels, r, r, r):
            raise ValueError(f"x must be [B, {self.in_channels}, {r}, {r}, {r}], got {tuple(x.shape)}")
        batch = x.shape[0]
        h = x.reshape(batch, self.in_channels, r**3).permute(0, 2, 1).float()
        h = self.input_layer(h).to(self.dtype)
        mod = self.timestep_modulation(t, batch)
        h = self.run_blocks(h, mod, cond, self.rope_phases)
        return h.permute(0, 2, 1).reshape(batch, self.out_channels, r, r, r)

    # --- fast path (see FlowTransformer.forward_fast) -----------------------------------------
    def check_fast_input(self, x: torch.Tensor, **kwargs) -> None:
        """Raise `FastPathUnsupported` unless `x` is a latent batch this model takes."""
        r = self.resolution
        if kwargs:
            raise FastPathUnsupported(f"unexpected model arguments {sorted(kwargs)}")
        if not torch.is_tensor(x) or x.dim() != 5 or tuple(x.shape[1:]) != (self.in_channels, r, r, r):
            raise FastPathUnsupported(f"x must be [B, {self.in_channels}, {r}, {r}, {r}]")

    def dense_tokens(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """`[B, C, R, R, R]` -> tokens `[B, R^3, C]` (a view) in the order of `forward`."""
        return x.reshape(x.shape[0], self.in_channels, self.resolution**3).permute(0, 2, 1)

    def dense_phases(self, x: torch.Tensor) -> torch.Tensor:
        """RoPE phases `[1, R^3, head_dim / 2]`, shared by every sample."""
        return self.rope_phases[None]

    def from_dense_tokens(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Output tokens `[B, R^3, C]` -> `[B, C, R, R, R]`, as `forward` returns them."""
        r = self.resolution
        return out.permute(0, 2, 1).reshape(out.shape[0], self.out_channels, r, r, r)
