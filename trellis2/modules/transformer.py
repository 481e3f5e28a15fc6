"""The DiT pieces shared by the dense (stage 1) and sparse (stages 2/3) TRELLIS.2 flow models.

* `TimestepEmbedder`: `[cos, sin]` features of `t` (256 of them), then `Linear, SiLU, Linear`.
* `FeedForwardNet`: `Linear, GELU(tanh), Linear` with hidden size `int(C * mlp_ratio)`.
* `ModulatedTransformerCrossBlock`: adaLN-modulated self-attention (RoPE), cross-attention to the
  image tokens (affine LayerNorm, no modulation, no gate), modulated MLP.
* `FlowTransformer`: the common trunk (timestep embedding, shared modulation, mixed precision,
  blocks, final LayerNorm + `out_layer`) that both flow models wrap.

Tokens are dense `[B, L, C]` or packed `[N, C]` with per-sample `seqlens` (see `attention.py`).
Precision follows the official models: Linear layers inside `blocks` hold the model dtype; the
timestep path, input/output layers, norms, RMS gains and the per-block `modulation` stay float32.

`forward` is the reference path. `FlowTransformer.forward_fast` is the same network on dense tokens
for a sampling run whose conditioning was prepared once (`prepare_condition`: every block's
cross-attention keys and values, and for an all-zero unconditional branch the constant that its
cross-attention returns), optionally with several copies of the batch in one forward (guidance
pairs) and LayerNorm evaluated directly in the activation dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, SelfAttention
from .norm import LayerNorm32

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "f32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "f16": torch.float16,
}


class FastPathUnsupported(ValueError):
    """The inputs of a sampling run do not fit the fast path (it then runs the reference path)."""


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """`"float32" | "bfloat16" | "float16"` (and their short forms) -> `torch.dtype`."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"unsupported model dtype {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown model dtype {dtype!r}; use one of float32, bfloat16, float16")
    return _DTYPES[dtype]


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of the (already 1000-scaled) flow time, followed by a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def frequency_features(self, t: torch.Tensor) -> torch.Tensor:
        """`[B]` -> `[B, frequency_embedding_size]` = `[cos(t f), sin(t f)]`."""
        half = self.frequency_embedding_size // 2
        k = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(self.max_period) * k / half)
        angles = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        if self.frequency_embedding_size % 2:
            emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.frequency_features(t)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class FeedForwardNet(nn.Module):
    """Position-wise MLP; parameters live under `mlp.{0,2}` as in the checkpoints."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def per_sample(vec: torch.Tensor, x: torch.Tensor, seqlens: Sequence[int] | None) -> torch.Tensor:
    """Make a per-sample `[B, C]` vector broadcastable against tokens `x` (dense or packed)."""
    if x.dim() == 3:
        return vec[:, None]
    if vec.shape[0] == 1:
        return vec
    if seqlens is None or len(seqlens) != vec.shape[0]:
        raise ValueError(f"packed tokens need one sequence length per sample ({vec.shape[0]} samples)")
    repeats = torch.tensor(list(seqlens), device=vec.device)
    return vec.repeat_interleave(repeats, dim=0, output_size=x.shape[0])


class ModulatedTransformerCrossBlock(nn.Module):
    """DiT block: modulated self-attention, cross-attention, modulated MLP (all pre-norm, residual)."""

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.share_mod = share_mod
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, num_heads, qkv_bias=qkv_bias, qk_rms_norm=qk_rms_norm)
        self.cross_attn = CrossAttention(
            channels, ctx_channels, num_heads, qkv_bias=qkv_bias, qk_rms_norm=qk_rms_norm_cross
        )
        self.mlp = FeedForwardNet(channels, mlp_ratio)
        if share_mod:
            self.modulation = nn.Parameter(torch.zeros(6 * channels))
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        context: torch.Tensor,
        phases: torch.Tensor | None = None,
        seqlens: Sequence[int] | None = None,
        context_seqlens: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """`x` tokens (dense `[B, L, C]` or packed `[N, C]` + `seqlens`), `mod [B, 6C]` (shared
        modulation, or the timestep embedding `[B, C]` without `share_mod`), `context` image tokens."""
        if self.share_mod:
            mod = (self.modulation + mod).to(mod.dtype)
        else:
            mod = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            per_sample(m, x, seqlens) for m in mod.chunk(6, dim=1)
        )
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + self.self_attn(h, phases, seqlens) * gate_msa
        x = x + self.cross_attn(self.norm2(x), context, seqlens, context_seqlens)
        h = self.norm3(x) * (1 + scale_mlp) + shift_mlp
        return x + self.mlp(h) * gate_mlp

    # --- fast path (dense tokens, conditioning prepared once per sampling run) -----------------
    def prepare_context(
        self, cond: torch.Tensor | None, null_cond: torch.Tensor | None, null_tokens: int
    ) -> BlockContext:
        """This block's cross-attention inputs for a sampling run: keys/values of `cond [Bc, T, Cc]`
        and, for an all-zero `null_cond`, the output its cross-attention gives every token.

        With identical keys the softmax is uniform, so attention returns the (identical) value row
        exactly; `to_out` of that row is computed on `null_tokens` rows, the size of the real call.
        """
        kv = self.cross_attn.context_kv(cond) if cond is not None else None
        null_out, null_rows = None, 0
        if null_cond is not None:
            _, v = self.cross_attn.context_kv(null_cond[:1])
            row = v[:, 0].flatten(-2)  # [1, C]: the attention output of every query
            rows = self.cross_attn.to_out(row.expand(max(1, null_tokens), -1).contiguous())
            null_out = rows[0].clone()  # a view would keep all `null_tokens` rows alive
            null_rows = null_cond.shape[0]
        return BlockContext(kv, null_out, null_rows)

    def forward_fast(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        context: BlockContext | torch.Tensor,
        phases: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        native_norm: bool = False,
        fused_qk: bool = False,
    ) -> torch.Tensor:
        """`forward` on dense `x [B, L, C]` with a prepared `context` (or a `[B, T, Cc]` tensor).

        `native_norm`: the affine-free norms run in the activation dtype (fp32 statistics inside the
        kernel) instead of through a float32 copy; `phases` may be `(cos, sin)` (real RoPE);
        `fused_qk`: the attentions' q/k norms and RoPE run fused (`modules.fused_qk`) where they can.
        """
        if self.share_mod:
            mod = (self.modulation + mod).to(mod.dtype)
        else:
            mod = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            m[:, None] for m in mod.chunk(6, dim=1)
        )
        h = self._plain_norm(self.norm1, x, native_norm) * (1 + scale_msa) + shift_msa
        x = x + self.self_attn(h, phases, fused=fused_qk) * gate_msa
        x = self._cross_fast(x, context, fused_qk)
        h = self._plain_norm(self.norm3, x, native_norm) * (1 + scale_mlp) + shift_mlp
        return x + self.mlp(h) * gate_mlp

    @staticmethod
    def _plain_norm(norm: LayerNorm32, x: torch.Tensor, native: bool) -> torch.Tensor:
        if not native:
            return norm(x)
        return F.layer_norm(x, norm.normalized_shape, None, None, norm.eps)

    def _cross_fast(
        self, x: torch.Tensor, context: BlockContext | torch.Tensor, fused: bool = False
    ) -> torch.Tensor:
        if torch.is_tensor(context):
            return x + self.cross_attn(self.norm2(x), context)
        if context.null_rows == 0:
            return x + self.cross_attn(self.norm2(x), context.kv, fused=fused)
        if context.kv is None:
            return x + context.null_out
        conditioned = x.shape[0] - context.null_rows
        out = torch.empty_like(x)
        head, tail = x[:conditioned], x[conditioned:]
        branch = self.cross_attn(self.norm2(head), context.kv, fused=fused)
        torch.add(head, branch, out=out[:conditioned])
        torch.add(tail, context.null_out, out=out[conditioned:])
        return out


@dataclass
class BlockContext:
    """One block's cross-attention inputs, prepared once per sampling run.

    `kv`: keys and values `[Bc, T, H, D]` of the conditioned batch rows (the first `Bc`); the last
    `null_rows` rows are conditioned on zero image tokens and take `null_out [C]` as their
    cross-attention output.
    """

    kv: tuple[torch.Tensor, torch.Tensor] | None
    null_out: torch.Tensor | None = None
    null_rows: int = 0


@dataclass
class PreparedCondition:
    """Every block's `BlockContext` for one batch layout (`batch_size` rows)."""

    blocks: list[BlockContext]
    batch_size: int

    def nbytes(self) -> int:
        """Device memory the cached keys, values and constants hold."""
        total = 0
        for block in self.blocks:
            for tensor in (*(block.kv or ()), block.null_out):
                if tensor is not None:
                    total += tensor.untyped_storage().nbytes()
        return total


def prepare_context(
    cond: torch.Tensor | Sequence[torch.Tensor], batch_size: int, dtype: torch.dtype
) -> tuple[torch.Tensor, list[int] | None]:
    """Image tokens as `(dense [B, T, Cc], None)` or, for a list of `[T_b, Cc]`, `(packed, seqlens)`."""
    if torch.is_tensor(cond):
        if cond.dim() != 3 or cond.shape[0] not in (1, batch_size):
            raise ValueError(f"cond must be [B={batch_size}, T, C] (or [1, T, C]), got {tuple(cond.shape)}")
        return cond.to(dtype).expand(batch_size, -1, -1), None
    cond = list(cond)
    if len(cond) != batch_size or any(c.dim() != 2 for c in cond):
        raise ValueError(f"cond as a list needs {batch_size} tensors of shape [T_b, C]")
    return torch.cat([c.to(dtype) for c in cond], dim=0), [c.shape[0] for c in cond]


def repeat_phases(
    phases: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None, batch: int, repeat: int
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
    """Per-sample RoPE phases `[batch, L, D/2]` (or a `(cos, sin)` pair) for `repeat` copies of the
    batch; phases shared by all samples (`[1, L, D/2]`, `[L, D/2]`) or already repeated pass through."""
    if phases is None:
        return None
    parts = phases if isinstance(phases, tuple) else (phases,)
    if parts[0].dim() != 3 or parts[0].shape[0] != batch or batch == 1:
        return phases
    parts = tuple(p.repeat(repeat, 1, 1) for p in parts)
    return parts if isinstance(phases, tuple) else parts[0]


class FlowTransformer(nn.Module):
    """Trunk of the TRELLIS.2 flow DiTs; subclasses map their input to tokens and back."""

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        cond_channels: int,
        out_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4.0,
        pe_mode: str = "ape",
        rope_freq: tuple[float, float] = (1.0, 10000.0),
        dtype: str | torch.dtype = "float32",
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
    ) -> None:
        super().__init__()
        if pe_mode != "rope":
            raise ValueError(
                f"pe_mode {pe_mode!r} is not supported: every released TRELLIS.2 flow model uses 'rope'"
            )
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.out_channels = out_channels
        self.num_blocks = num_blocks
        self.num_heads = num_heads or model_channels // num_head_channels
        self.head_dim = model_channels // self.num_heads
        self.mlp_ratio = mlp_ratio
        self.pe_mode = pe_mode
        self.rope_freq = tuple(rope_freq)
        self.share_mod = share_mod
        self.dtype = parse_dtype(dtype)

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 6 * model_channels))
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            ModulatedTransformerCrossBlock(
                model_channels,
                cond_channels,
                self.num_heads,
                mlp_ratio=mlp_ratio,
                share_mod=share_mod,
                qk_rms_norm=qk_rms_norm,
                qk_rms_norm_cross=qk_rms_norm_cross,
            )
            for _ in range(num_blocks)
        )
        self.out_layer = nn.Linear(model_channels, out_channels)
        self.convert_to(self.dtype)

    @property
    def device(self) -> torch.device:
        return self.input_layer.weight.device

    def convert_to(self, dtype: str | torch.dtype) -> None:
        """Cast the Linear layers inside `blocks` to `dtype` (everything else stays float32)."""
        self.dtype = parse_dtype(dtype)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                module.to(self.dtype)

    def timestep_modulation(self, t: torch.Tensor | float, batch_size: int) -> torch.Tensor:
        """float32 `[B]` times -> the per-sample modulation input in the model dtype."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        if t.dim() == 0 or t.shape == (1,):
            t = t.reshape(1).expand(batch_size)
        if t.shape != (batch_size,):
            raise ValueError(f"t must be a scalar, [1] or [{batch_size}], got {tuple(t.shape)}")
        t_emb = self.t_embedder(t)
        if self.share_mod:
            t_emb = self.adaLN_modulation(t_emb)
        return t_emb.to(self.dtype)

    def run_blocks(
        self,
        h: torch.Tensor,
        mod: torch.Tensor,
        cond: torch.Tensor | Sequence[torch.Tensor],
        phases: torch.Tensor | None,
        seqlens: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Model-dtype tokens through every block; returns float32 `out_layer` features."""
        context, context_seqlens = prepare_context(cond, mod.shape[0], self.dtype)
        for block in self.blocks:
            h = block(h, mod, context, phases, seqlens, context_seqlens)
        h = torch.nn.functional.layer_norm(h.float(), h.shape[-1:])
        return self.out_layer(h)

    # --- fast path ---------------------------------------------------------------------------
    def prepare_condition(
        self, cond: torch.Tensor | None, null_cond: torch.Tensor | None = None, tokens: int = 1
    ) -> PreparedCondition:
        """Cross-attention inputs of every block for batch rows `[cond rows; null_cond rows]`.

        `cond [Bc, T, Cc]`: image tokens whose keys/values are computed here once; `null_cond
        [Bn, T, Cc]`: an all-zero unconditional condition (the caller checks it is zero), whose
        cross-attention output is a per-block constant; `tokens`: latent tokens per sample.
        """
        if cond is None and null_cond is None:
            raise ValueError("prepare_condition needs cond, null_cond or both")
        cond = None if cond is None else cond.to(self.dtype)
        null_cond = None if null_cond is None else null_cond.to(self.dtype)
        null_tokens = 0 if null_cond is None else null_cond.shape[0] * tokens
        blocks = [block.prepare_context(cond, null_cond, null_tokens) for block in self.blocks]
        rows = (0 if cond is None else cond.shape[0]) + (0 if null_cond is None else null_cond.shape[0])
        return PreparedCondition(blocks, rows)

    def forward_fast(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        condition: PreparedCondition | torch.Tensor,
        phases: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
        repeat: int = 1,
        native_norm: bool = False,
        block_fns: Sequence[Callable[..., torch.Tensor]] | None = None,
        num_blocks: int | None = None,
        fused_qk: bool = False,
    ) -> torch.Tensor:
        """The network on dense `tokens [B, L, in_channels]` at times `t [B]`, its batch taken
        `repeat` times (rows `[copy 0; copy 1; ...]`, e.g. a guidance pair) -> float32
        `[repeat * B, L, out_channels]`.

        `condition`: from `prepare_condition` for `repeat * B` rows, or image tokens
        `[repeat * B, T, Cc]`. The input layer and timestep modulation run once on the B samples.
        `block_fns` replace `block.forward_fast` (e.g. compiled versions), one per block;
        `num_blocks` runs only the first blocks (a probe of the kernels at these shapes); `native_norm`
        and `fused_qk` as in the blocks' `forward_fast`.
        """
        batch = tokens.shape[0]
        h = self.input_layer(tokens.float()).to(self.dtype)
        mod = self.timestep_modulation(t, batch)
        if repeat > 1:
            h = h.repeat(repeat, 1, 1)
            mod = mod.repeat(repeat, 1)
            phases = repeat_phases(phases, batch, repeat)
        if torch.is_tensor(condition):
            if condition.dim() != 3 or condition.shape[0] != h.shape[0]:
                raise ValueError(f"condition must be [{h.shape[0]}, T, C], got {tuple(condition.shape)}")
            contexts = [condition.to(self.dtype)] * len(self.blocks)
        else:
            if condition.batch_size != h.shape[0]:
                raise ValueError(f"condition prepared for {condition.batch_size} rows, got {h.shape[0]}")
            contexts = condition.blocks
        for index, block in enumerate(self.blocks[:num_blocks]):
            fn = block.forward_fast if block_fns is None else block_fns[index]
            h = fn(h, mod, contexts[index], phases, native_norm, fused_qk)
        h = F.layer_norm(h.float(), h.shape[-1:])
        if repeat > 1:
            # One GEMM per copy, with the rows of a single forward: the float32 output layer's
            # kernel (and its summation order) may change with the row count; it costs little.
            return torch.cat([self.out_layer(part) for part in h.chunk(repeat)])
        return self.out_layer(h)
