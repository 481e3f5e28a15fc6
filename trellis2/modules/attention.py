"""Softmax attention on `torch.nn.functional.scaled_dot_product_attention`, dense and variable-length.

Token tensors come in two layouts:

* dense: `[B, L, H, D]`, every batch element has `L` tokens;
* packed: `[N, H, D]` plus `seqlens` (tokens of batch element `b` are the `b`-th contiguous run).

Packed attention never builds a mask: batch elements of equal lengths are viewed as one dense batch
(zero-copy), otherwise each element is one SDPA call on its own slice, written into a preallocated
output. So memory stays what SDPA itself needs (flash / memory-efficient kernels: linear in tokens).
Softmax scale is `1 / sqrt(D)`, no dropout, no mask within an element, as in the official models.

The projection modules (`SelfAttention`, `CrossAttention`) carry the official parameter names
(`to_qkv`, `to_q`, `to_kv`, `to_out`, `q_rms_norm`, `k_rms_norm`) and accept either layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_qk
from .norm import MultiHeadRMSNorm
from .rope import apply_rotary


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`q [B, Lq, H, D]`, `k, v [B, Lk, H, D]` -> `[B, Lq, H, D]`."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _uniform(seqlens: Sequence[int]) -> bool:
    return len(set(seqlens)) <= 1


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_seqlens: Sequence[int],
    kv_seqlens: Sequence[int],
) -> torch.Tensor:
    """Attention per batch element on packed `q [Nq, H, D]`, `k, v [Nk, H, D]` -> `[Nq, H, D]`."""
    if len(q_seqlens) != len(kv_seqlens):
        raise ValueError(f"{len(q_seqlens)} query sequences but {len(kv_seqlens)} key/value sequences")
    if sum(q_seqlens) != q.shape[0] or sum(kv_seqlens) != k.shape[0]:
        raise ValueError(
            f"sequence lengths (sum {sum(q_seqlens)} / {sum(kv_seqlens)}) do not match the packed "
            f"tensors ({q.shape[0]} query / {k.shape[0]} key rows)"
        )
    batch = len(q_seqlens)
    if batch and _uniform(q_seqlens) and _uniform(kv_seqlens):
        out = dense_attention(
            q.reshape(batch, q_seqlens[0], *q.shape[1:]),
            k.reshape(batch, kv_seqlens[0], *k.shape[1:]),
            v.reshape(batch, kv_seqlens[0], *v.shape[1:]),
        )
        return out.reshape(q.shape)
    out = torch.empty_like(q)
    q_start = kv_start = 0
    for q_len, kv_len in zip(q_seqlens, kv_seqlens, strict=True):
        if q_len:
            qs, ks = slice(q_start, q_start + q_len), slice(kv_start, kv_start + kv_len)
            out[qs] = dense_attention(q[None, qs], k[None, ks], v[None, ks])[0]
        q_start += q_len
        kv_start += kv_len
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_seqlens: Sequence[int] | None = None,
    kv_seqlens: Sequence[int] | None = None,
) -> torch.Tensor:
    """Attention for any mix of dense (`[B, L, H, D]`) and packed (`[N, H, D]` + seqlens) inputs.

    The output has the layout of `q`. A packed side needs its seqlens; a dense side is treated as
    `B` sequences of equal length.
    """
    if q.dim() == 4 and k.dim() == 4:
        return dense_attention(q, k, v)
    if q.dim() == 4:
        q_seqlens = [q.shape[1]] * q.shape[0]
    elif q_seqlens is None:
        raise ValueError("packed queries [N, H, D] need q_seqlens")
    if k.dim() == 4:
        kv_seqlens = [k.shape[1]] * k.shape[0]
    elif kv_seqlens is None:
        raise ValueError("packed keys/values [N, H, D] need kv_seqlens")
    out = packed_attention(q.flatten(0, -3), k.flatten(0, -3), v.flatten(0, -3), q_seqlens, kv_seqlens)
    return out.reshape(q.shape)


class SelfAttention(nn.Module):
    """Multi-head self-attention with optional q/k RMS norm and RoPE (applied in that order)."""

    def __init__(
        self, channels: int, num_heads: int, qkv_bias: bool = True, qk_rms_norm: bool = False
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(
        self,
        x: torch.Tensor,
        phases: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        seqlens: Sequence[int] | None = None,
        fused: bool = False,
    ) -> torch.Tensor:
        """`x [B, L, C]` (dense) or `[N, C]` with `seqlens` (packed); `phases [..., D/2]` like `x`
        (complex, or `(cos, sin)`). `fused`: q and k are normed and rotated by `fused_qk.norm_rotary`
        where it applies (dense CUDA tokens, `(cos, sin)` phases)."""
        qkv = self.to_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))
        q, k, v = qkv.unbind(dim=-3)
        if fused and fused_qk.supported(q) and not torch.is_tensor(phases):
            cos, sin = (None, None) if phases is None else phases
            q = fused_qk.norm_rotary(q, self.q_rms_norm if self.qk_rms_norm else None, cos, sin)
            k = fused_qk.norm_rotary(k, self.k_rms_norm if self.qk_rms_norm else None, cos, sin)
            return self.to_out(attention(q, k, v).flatten(-2))
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if phases is not None:
            q, k = apply_rotary(q, phases), apply_rotary(k, phases)
        h = attention(q, k, v, seqlens, seqlens)
        return self.to_out(h.flatten(-2))


class CrossAttention(nn.Module):
    """Multi-head attention from tokens to a context (image features); no RoPE."""

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_rms_norm: bool = False,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_q = nn.Linear(channels, channels, bias=qkv_bias)
        self.to_kv = nn.Linear(ctx_channels, 2 * channels, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (RMS-normed when configured) and values `[..., T, H, D]` of `context [..., T, Cc]`:
        what `forward` computes from the context, ready to be reused for many queries."""
        kv = self.to_kv(context).unflatten(-1, (2, self.num_heads, self.head_dim))
        k, v = kv.unbind(dim=-3)
        if self.qk_rms_norm:
            k = self.k_rms_norm(k)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        seqlens: Sequence[int] | None = None,
        context_seqlens: Sequence[int] | None = None,
        fused: bool = False,
    ) -> torch.Tensor:
        """`x` dense `[B, L, C]` or packed `[N, C]` + `seqlens`; `context` likewise (`[B, T, Cc]`
        or `[T, Cc]` + `context_seqlens`), or its `context_kv` computed beforehand. `fused`: with
        `context_kv`, the queries' RMS norm runs as `fused_qk.norm_rotary` where it applies."""
        q = self.to_q(x).unflatten(-1, (self.num_heads, self.head_dim))
        if isinstance(context, tuple):
            k, v = context
            if self.qk_rms_norm and fused and fused_qk.supported(q):
                q = fused_qk.norm_rotary(q, self.q_rms_norm)
            elif self.qk_rms_norm:
                q = self.q_rms_norm(q)
        else:
            kv = self.to_kv(context).unflatten(-1, (2, self.num_heads, self.head_dim))
            k, v = kv.unbind(dim=-3)
            if self.qk_rms_norm:
                q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        h = attention(q, k, v, seqlens, context_seqlens)
        return self.to_out(h.flatten(-2))
