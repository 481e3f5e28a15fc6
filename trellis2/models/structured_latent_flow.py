"""`SLatFlowModel` / `ElasticSLatFlowModel`: the sparse DiTs of the shape (stage 2) and texture (stage 3) latents."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..modules.rope import RotaryPositionEmbedder
from ..modules.sparse import SparseTensor
from ..modules.transformer import FastPathUnsupported, FlowTransformer


class SLatFlowModel(FlowTransformer):
    """Flow transformer over the active voxels of a `SparseTensor`; attention stays within each sample.

    RoPE phases come from `coords[:, 1:]` and are cached in the tensor's `spatial_cache`, so every
    sampler step on the same voxels reuses them. Samples of equal token counts run as one dense batch,
    otherwise as packed variable-length sequences.
    """

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
    ) -> None:
        # use_checkpoint / initialization only matter for training.
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
        self.resolution = resolution  # stored for reference; the network works on any grid
        self.rope = RotaryPositionEmbedder(self.head_dim, rope_freq=self.rope_freq)

    def rope_phases(self, x: SparseTensor) -> torch.Tensor:
        """complex64 `[N, head_dim / 2]` phases of `x`'s voxels, cached on the tensor."""
        key = self.rope.cache_key
        phases = x.spatial_cache.get(key)
        if phases is None or phases.device != x.coords.device:
            phases = self.rope.phases(x.coords[:, 1:])
            x.spatial_cache[key] = phases
        return phases

    def forward(
        self,
        x: SparseTensor,
        t: torch.Tensor,
        cond: torch.Tensor | Sequence[torch.Tensor],
        concat_cond: SparseTensor | None = None,
        **kwargs,
    ) -> SparseTensor:
        """`x` latent (`feats [N, C]`), `t [B]` (1000-scaled), `cond [B, T, cond_channels]` or a list
        of `[T_b, cond_channels]`, optional `concat_cond` on the same voxels (appended to the channels).
        Returns float32 `[N, out_channels]` features on `x`'s voxels."""
        feats = x.feats
        if concat_cond is not None:
            if concat_cond.feats.shape[0] != feats.shape[0] or not torch.equal(concat_cond.coords, x.coords):
                raise ValueError("concat_cond must have the same voxels, in the same order, as x")
            feats = torch.cat([feats, concat_cond.feats.to(feats.dtype)], dim=-1)
        if feats.dim() != 2 or feats.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels (x plus concat_cond), got {tuple(feats.shape)}"
            )
        seqlens = x.seqlens
        batch = len(seqlens)
        h = self.input_layer(feats.float()).to(self.dtype)
        mod = self.timestep_modulation(t, batch)
        phases = self.rope_phases(x)
        if batch and len(set(seqlens)) == 1:
            # Equal token counts: a dense [B, L, C] batch (zero-copy views, broadcast modulation).
            out = self.run_blocks(
                h.reshape(batch, seqlens[0], -1), mod, cond, phases.reshape(batch, seqlens[0], -1)
            )
            out = out.reshape(-1, self.out_channels)
        else:
            out = self.run_blocks(h, mod, cond, phases, seqlens)
        return x.replace(out)

    # --- fast path (see FlowTransformer.forward_fast) -----------------------------------------
    def check_fast_input(self, x: SparseTensor, concat_cond: SparseTensor | None = None, **kwargs) -> None:
        """Raise `FastPathUnsupported` unless every sample of `x` has the same number of voxels (a
        dense `[B, L, C]` batch, as `forward` runs it) and `concat_cond` lies on the same voxels."""
        if not isinstance(x, SparseTensor):
            raise FastPathUnsupported("x must be a SparseTensor")
        seqlens = x.seqlens
        if not seqlens or len(set(seqlens)) != 1:
            raise FastPathUnsupported(f"samples of unequal token counts {seqlens} run packed")
        channels = x.feats.shape[1] + (0 if concat_cond is None else concat_cond.feats.shape[1])
        if x.feats.dim() != 2 or channels != self.in_channels:
            raise FastPathUnsupported(f"expected {self.in_channels} input channels, got {channels}")
        if concat_cond is not None and not torch.equal(concat_cond.coords, x.coords):
            raise FastPathUnsupported("concat_cond must have the same voxels, in the same order, as x")

    def dense_tokens(
        self, x: SparseTensor, concat_cond: SparseTensor | None = None, **kwargs
    ) -> torch.Tensor:
        """Features (plus `concat_cond`) as tokens `[B, L, in_channels]` (checked inputs only)."""
        feats = x.feats
        if concat_cond is not None:
            feats = torch.cat([feats, concat_cond.feats.to(feats.dtype)], dim=-1)
        return feats.reshape(x.batch_size, -1, feats.shape[-1])

    def dense_phases(self, x: SparseTensor) -> torch.Tensor:
        """RoPE phases of `x`'s voxels as `[B, L, head_dim / 2]`."""
        return self.rope_phases(x).reshape(x.batch_size, -1, self.head_dim // 2)

    def from_dense_tokens(self, x: SparseTensor, out: torch.Tensor) -> SparseTensor:
        """Output tokens `[B, L, C]` back on `x`'s voxels."""
        return x.replace(out.reshape(-1, self.out_channels))


class ElasticSLatFlowModel(SLatFlowModel):
    """Training-time memory-elastic variant; at inference identical to `SLatFlowModel`."""
