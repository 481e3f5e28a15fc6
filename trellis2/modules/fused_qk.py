"""Fused q/k preparation for the fast path: multi-head RMS norm and RoPE in one Triton kernel.

The eager attention prepares each of q and k in about ten full passes over the activations (a float32
copy, the norm, the division, two gains, a rounding to bf16, another float32 copy, the complex product,
a rounding again). `norm_rotary` does the same arithmetic in one pass, in the same order and with the
same roundings: per head row, in float32, `y = x / max(||x||, eps) * gamma * scale` (correctly rounded
square root and division, as PyTorch's kernels compute them), rounded to the activation dtype as
`MultiHeadRMSNorm` returns it; then the channel pairs `(a, b)` rotated by `(cos, sin)` as
`(a cos - b sin, a sin + b cos)` in float32 and rounded again, as `apply_rotary` does. The bits can
still differ in two places: the order of the 128-term sum of squares, and where a compiler fuses a
multiply and an add in the complex product. The kernel can sum in each order that PyTorch's reduction may
use and fuse either product (`NORM_ORDERS`, `ROPE_VARIANTS`); `exact_variant` finds on the device the
combination that gives the eager code's bits, and the fast path (`fused_qk` in
`trellis2.samplers.fast_path`) uses the kernel only when one does. (A last-bit difference in float32
changes a rounded bf16 value rarely, but in a bf16 flow any changed value moves the outputs by about the
rounding noise of bf16 itself; see `docs/benchmarks/README.md`.)

CUDA only, with Triton; `supported` says when the kernel applies, and callers keep the eager code
for everything else (the CPU, other head sizes, packed tokens).
"""

from __future__ import annotations

import os

import torch

from .norm import MultiHeadRMSNorm

try:  # Triton comes with PyTorch's CUDA builds; the CPU build has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

NORM_EPS = 1e-12  # `F.normalize`'s default, as `MultiHeadRMSNorm` uses it
MAX_HEADS = 64
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter (the tests use it)


def available() -> bool:
    """Whether Triton is installed (the kernel also needs a CUDA tensor, see `supported`)."""
    return triton is not None


def supported(x: torch.Tensor) -> bool:
    """Whether `norm_rotary` takes dense `x [B, L, H, D]`: CUDA (or Triton's interpreter), Triton, a
    power-of-two head size, the channels of a head contiguous."""
    d = x.shape[-1] if x.dim() == 4 else 0
    return (
        available()
        and (x.is_cuda or INTERPRETED)
        and x.dim() == 4
        and x.dtype in (torch.bfloat16, torch.float16, torch.float32)
        and d >= 2
        and d & (d - 1) == 0
        and x.shape[2] <= MAX_HEADS
        and x.stride(-1) == 1
    )


# How PyTorch's CUDA kernels may order the arithmetic that `norm_rotary` repeats (from ATen's reduction and
# complex product; `exact_variant` finds on the device which one gives its bits before the fast path uses
# the kernel): the sum of squares of a 128-wide head row runs on 32 lanes, each lane summing 4 squares
# (strided by 32, or 4 neighbours) in order, then the lanes' sums in a tree (neighbours first, or halves
# first); the complex product (a + ib)(c + is) = (ac - bs) + i(as + bc) may fuse one product of each pair
# into a multiply-add.
NORM_ORDERS = ("strided, neighbours", "adjacent, neighbours", "strided, halves", "adjacent, halves", "any")
ROPE_VARIANTS = ("products", "fma_first", "fma_second")  # no fusion; fma(a, c, -bs); fma(-b, s, ac)
TREE_HEAD_DIM = 128  # the ordered sums above are written for this head size (the TRELLIS.2 flows')

if triton is not None:

    @triton.jit
    def _round(y, ROUND_BF16: tl.constexpr, out_dtype: tl.constexpr):
        """float32 `y` rounded to the output dtype (and back to float32). bf16 is rounded to nearest even
        on the bits, so the result never depends on how a converter rounds."""
        if ROUND_BF16:
            bits = y.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            return bits.to(tl.float32, bitcast=True)
        return y.to(out_dtype).to(tl.float32)

    @triton.jit
    def _pairs_of_neighbours(v, N: tl.constexpr, BLOCK_H: tl.constexpr):
        """`[BLOCK_H, N]` -> `[BLOCK_H, N / 2]`: positions 2j and 2j + 1 added."""
        first, second = tl.split(tl.reshape(v, (BLOCK_H, N // 2, 2)))
        return first + second

    @triton.jit
    def _ordered_sum_of_squares(row_ptr, stride_h, heads, BLOCK_H: tl.constexpr, ORDER: tl.constexpr):
        """Sum of squares of each 128-wide head row at `row_ptr + h * stride_h`, in the order
        `NORM_ORDERS[ORDER]`. The row is loaded so that position p holds lane `p` (a tree of neighbours)
        or lane `bitreverse(p)` (a tree of halves: lanes j and j + 16 first), each lane's 4 elements
        along the last axes (j = 2 * j1 + j0)."""
        p = tl.arange(0, 32)
        if ORDER >= 2:
            lane = ((p & 1) << 4) | ((p & 2) << 2) | (p & 4) | ((p & 8) >> 2) | ((p & 16) >> 4)
        else:
            lane = p
        lane = lane[None, :, None, None]
        j = 2 * tl.arange(0, 2)[None, None, :, None] + tl.arange(0, 2)[None, None, None, :]
        element = lane + 32 * j if ORDER % 2 == 0 else 4 * lane + j
        h = tl.arange(0, BLOCK_H)[:, None, None, None]
        x = tl.load(row_ptr + h * stride_h + element, mask=h < heads, other=0.0).to(tl.float32)
        sq = x * x
        j_even, j_odd = tl.split(sq)  # [row, position, j1] for j0 = 0 and 1
        s0, s2 = tl.split(j_even)
        s1, s3 = tl.split(j_odd)
        v = ((s0 + s1) + s2) + s3  # [BLOCK_H, 32]: each lane's own sum
        v = _pairs_of_neighbours(v, 32, BLOCK_H)
        v = _pairs_of_neighbours(v, 16, BLOCK_H)
        v = _pairs_of_neighbours(v, 8, BLOCK_H)
        v = _pairs_of_neighbours(v, 4, BLOCK_H)
        return tl.reshape(_pairs_of_neighbours(v, 2, BLOCK_H), (BLOCK_H,))

    @triton.jit
    def _norm_rotary_kernel(
        x_ptr,
        out_ptr,
        gamma_ptr,
        cos_ptr,
        sin_ptr,
        scale,
        eps,
        tokens,
        heads,
        stride_xb,
        stride_xl,
        stride_xh,
        stride_cb,
        stride_cl,
        HAS_NORM: tl.constexpr,
        HAS_ROPE: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        ORDER: tl.constexpr,
        ROPE_FMA: tl.constexpr,
        BLOCK_H: tl.constexpr,
        D: tl.constexpr,
    ):
        row = tl.program_id(0)  # one token of one sample: all its heads
        b = row // tokens
        pos = row % tokens
        h = tl.arange(0, BLOCK_H)[:, None]
        d = tl.arange(0, D)[None, :]
        mask = (h < heads) & (d < D)
        x = tl.load(x_ptr + b * stride_xb + pos * stride_xl + h * stride_xh + d, mask=mask, other=0.0)
        out_dtype = out_ptr.dtype.element_ty
        y = x.to(tl.float32)
        if HAS_NORM:
            if ORDER < 4:
                row_ptr = x_ptr + b * stride_xb + pos * stride_xl
                sum_sq = _ordered_sum_of_squares(row_ptr, stride_xh, heads, BLOCK_H, ORDER)
            else:
                sum_sq = tl.sum(y * y, axis=1)
            norm = tl.sqrt_rn(sum_sq)
            norm = tl.maximum(norm, eps)
            y = tl.div_rn(y, norm[:, None])
            gamma = tl.load(gamma_ptr + h * D + d, mask=mask, other=0.0).to(tl.float32)
            y = y * gamma
            y = y * scale
            y = _round(y, ROUND_BF16, out_dtype)  # the norm's output, rounded as the eager module returns it
        if HAS_ROPE:
            a, c = tl.split(tl.reshape(y, (BLOCK_H, D // 2, 2)))
            p = tl.arange(0, D // 2)[None, :]
            cos = tl.load(cos_ptr + b * stride_cb + pos * stride_cl + p)
            sin = tl.load(sin_ptr + b * stride_cb + pos * stride_cl + p)
            if ROPE_FMA == 1:
                real = tl.fma(a, cos, -(c * sin))
                imag = tl.fma(a, sin, c * cos)
            elif ROPE_FMA == 2:
                real = tl.fma(-c, sin, a * cos)
                imag = tl.fma(c, cos, a * sin)
            else:
                real = a * cos - c * sin
                imag = a * sin + c * cos
            y = tl.reshape(tl.join(real, imag), (BLOCK_H, D))
        y = _round(y, ROUND_BF16, out_dtype)
        tl.store(out_ptr + row * heads * D + h * D + d, y.to(out_dtype), mask=mask)


def norm_rotary(
    x: torch.Tensor,
    norm: MultiHeadRMSNorm | None,
    cos: torch.Tensor | None = None,
    sin: torch.Tensor | None = None,
    rope_variant: str | None = None,
    norm_order: str | None = None,
) -> torch.Tensor:
    """`x [B, L, H, D]` (any strides with contiguous heads) through `norm` (skipped when None), then
    rotated by `cos, sin` (float32 `[B or 1, L, D/2]`; skipped when None) -> a contiguous tensor of
    `x`'s shape and dtype: `apply_rotary(norm(x), (cos, sin))` in one pass (see the module docstring).
    `norm_order` (one of `NORM_ORDERS`) and `rope_variant` (one of `ROPE_VARIANTS`): how the sum of
    squares is ordered and the complex product fused; default: what `exact_variant` found for this
    device, else the first of each."""
    if not supported(x):
        raise ValueError(f"norm_rotary does not take a {x.dtype} {tuple(x.shape)} tensor on {x.device}")
    batch, tokens, heads, dim = x.shape
    out = torch.empty((batch, tokens, heads, dim), dtype=x.dtype, device=x.device)
    if norm is None and cos is None:
        return out.copy_(x)
    if cos is not None:
        if sin is None or cos.shape != sin.shape or cos.shape[-2:] != (tokens, dim // 2):
            raise ValueError(f"cos and sin must be [B or 1, {tokens}, {dim // 2}]")
        cos = cos.float().reshape(-1, tokens, dim // 2).contiguous()
        sin = sin.float().reshape(-1, tokens, dim // 2).contiguous()
        if cos.shape[0] not in (1, batch):
            raise ValueError(f"cos and sin are for {cos.shape[0]} samples, x has {batch}")
        stride_cb = 0 if cos.shape[0] == 1 else cos.stride(0)
    else:
        stride_cb = 0
    gamma = None if norm is None else norm.gamma
    found = _FOUND.get(x.device, (NORM_ORDERS[0], ROPE_VARIANTS[0]))
    if gamma is not None and tuple(gamma.shape) != (heads, dim):
        raise ValueError(f"the norm's gain is {tuple(gamma.shape)}, x has {heads} heads of {dim}")
    _norm_rotary_kernel[(batch * tokens,)](
        x,
        out,
        x if gamma is None else gamma.contiguous(),
        x if cos is None else cos,
        x if sin is None else sin,
        1.0 if norm is None else float(norm.scale),
        NORM_EPS,
        tokens,
        heads,
        x.stride(0),
        x.stride(1),
        x.stride(2),
        stride_cb,
        dim // 2,
        HAS_NORM=gamma is not None,
        HAS_ROPE=cos is not None,
        ROUND_BF16=x.dtype == torch.bfloat16,
        ORDER=NORM_ORDERS.index(norm_order or found[0]) if dim == TREE_HEAD_DIM else len(NORM_ORDERS) - 1,
        ROPE_FMA=ROPE_VARIANTS.index(rope_variant or found[1]),
        enable_fp_fusion=False,  # multiply-adds only where written (`tl.fma`), as the eager kernels do
        BLOCK_H=triton.next_power_of_2(heads),
        D=dim,
    )
    return out


_FOUND: dict[torch.device, tuple[str, str]] = {}  # device -> (norm order, RoPE variant) with PyTorch's bits
_CHECKED: dict[tuple[torch.device, torch.dtype], tuple[str, str] | None] = {}


def exact_variant(
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    heads: int = 12,
    head_dim: int = TREE_HEAD_DIM,
    tokens: int = 4096,
) -> tuple[str, str] | None:
    """`(norm order, RoPE variant)` with which `norm_rotary` gives bitwise the eager code's results on
    `device` for heads of `head_dim` (random `[2, tokens, heads, head_dim]` inputs; the norm, RoPE and
    both checked), or None when no combination does (always for a head size other than
    `TREE_HEAD_DIM`). Remembered per device and dtype."""
    from .rope import apply_rotary  # the eager code the kernel must reproduce

    if head_dim != TREE_HEAD_DIM or heads > MAX_HEADS:
        return None
    g = torch.Generator(device).manual_seed(0)
    x = (torch.randn(2, tokens, 3, heads, TREE_HEAD_DIM, generator=g, device=device) * 3).to(dtype)[:, :, 0]
    key = (x.device, dtype)
    if key in _CHECKED:
        return _CHECKED[key]
    _CHECKED[key] = None
    norm = MultiHeadRMSNorm(TREE_HEAD_DIM, heads).to(device)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(heads, TREE_HEAD_DIM, generator=g, device=device) + 0.5)
        angles = torch.rand(2, tokens, TREE_HEAD_DIM // 2, generator=g, device=device) * 60.0
        phases = torch.polar(torch.ones_like(angles), angles)
        cos, sin = phases.real.contiguous(), phases.imag.contiguous()
        normed, rotated = norm(x), apply_rotary(x, phases)
        orders = [o for o in NORM_ORDERS[:-1] if torch.equal(norm_rotary(x, norm, norm_order=o), normed)]
        variants = [v for v in ROPE_VARIANTS if torch.equal(norm_rotary(x, None, cos, sin, v), rotated)]
        both = apply_rotary(normed, phases)
        for order in orders:
            for variant in variants:
                if torch.equal(norm_rotary(x, norm, cos, sin, variant, order), both):
                    _FOUND[x.device] = _CHECKED[key] = (order, variant)
                    return order, variant
    return None
