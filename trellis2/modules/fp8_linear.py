"""FP8 matrix products for the flows' linear layers: an opt-in lever of the fast path (`fp8` in
`trellis2.samplers.fast_path`), for GPUs with FP8 tensor cores (compute capability 8.9 and newer: Ada,
Hopper).

Each weight is quantized once per sampling run to float8 e4m3 with one scale per output row; each
activation is quantized at every call with one scale per token row (its largest magnitude maps to e4m3's
largest value, 448). The product runs as `torch._scaled_mm` with both row-wise scales, accumulates in
float32 and returns the activation dtype. e4m3 keeps 3 mantissa bits, so the outputs change: this path is
never on by default, and the benchmarks report its drift against the bf16 reference.

`quantize_rows` is the definition (PyTorch); `quantize_rows_fused` does the same in one Triton pass and is
used only where a probe finds it bitwise equal. On the CPU, `scaled_product` runs the product through
float32 dequantization (the tests check the arithmetic there).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

try:  # Triton comes with PyTorch's CUDA builds; the CPU build has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
INV_FP8_MAX = 1.0 / FP8_MAX  # the scale is `amax * INV_FP8_MAX` (in float32) in both quantizers
MIN_SCALE = 1e-12  # an all-zero row keeps a finite scale
MIN_CAPABILITY = (8, 9)
ALIGNMENT = 16  # `torch._scaled_mm` wants both dimensions of the weight divisible by this
# The layers of each transformer block that run in FP8: every matrix product that runs at every step.
# The image tokens' cross-attention keys and values (`cross_attn.to_kv`) are computed once per run and
# stay in the model's dtype, as do the modulation and the input and output layers.
BLOCK_LAYERS = (
    "self_attn.to_qkv",
    "self_attn.to_out",
    "cross_attn.to_q",
    "cross_attn.to_out",
    "mlp.mlp.0",
    "mlp.mlp.2",
)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter (the tests use it)

Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def unavailable_reason(device: torch.device) -> str | None:
    """Why FP8 products cannot run on `device` (None: they can)."""
    if device.type != "cuda":
        return "needs CUDA"
    if not hasattr(torch, "_scaled_mm"):
        return "this PyTorch has no torch._scaled_mm"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return f"needs compute capability 8.9 or newer (this GPU: {capability[0]}.{capability[1]})"
    return None


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`x [M, K]` -> `(q [M, K] float8 e4m3, scale [M, 1] float32)` with `x ≈ q * scale` row by row."""
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = (amax * INV_FP8_MAX).clamp_min(MIN_SCALE)  # a product: CUDA divides by a scalar so anyway
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


if triton is not None:

    @triton.jit
    def _round_to_e4m3(y):
        """float32 `y` (|y| <= 448) rounded to the nearest e4m3 value, ties to even, as float32: 3 mantissa
        bits for normal values, steps of 2^-9 below 2^-6; the sign kept, -0 included. Rounded here rather
        than by the conversion, so that the result never depends on how a converter rounds."""
        bits = y.to(tl.uint32, bitcast=True)
        sign = bits & 0x80000000
        magnitude = bits ^ sign
        normal = (magnitude + 0x7FFFF + ((magnitude >> 20) & 1)) & 0xFFF00000
        a = magnitude.to(tl.float32, bitcast=True)
        small = ((a * 512.0 + 12582912.0) - 12582912.0) * 0.001953125  # 1.5 * 2^23 rounds to integers
        rounded = tl.where(a < 0.015625, small, normal.to(tl.float32, bitcast=True))
        return (rounded.to(tl.uint32, bitcast=True) | sign).to(tl.float32, bitcast=True)

    @triton.jit
    def _quantize_rows_kernel(
        x_ptr,
        q_ptr,
        scale_ptr,
        cols,
        x_stride,
        q_stride,
        fp8_max,
        inv_fp8_max,
        min_scale,
        BLOCK: tl.constexpr,
    ):
        """One program per row: the row's largest magnitude, its scale, the scaled row in FP8."""
        row = tl.program_id(0)
        offsets = tl.arange(0, BLOCK)
        mask = offsets < cols
        x = tl.load(x_ptr + row * x_stride + offsets, mask=mask, other=0.0).to(tl.float32)
        amax = tl.max(tl.abs(x), axis=0)
        scale = tl.maximum(amax * inv_fp8_max, min_scale)
        y = tl.math.div_rn(x, scale)  # correctly rounded, as PyTorch divides
        y = _round_to_e4m3(tl.minimum(tl.maximum(y, -fp8_max), fp8_max))
        tl.store(q_ptr + row * q_stride + offsets, y.to(q_ptr.dtype.element_ty), mask=mask)
        tl.store(scale_ptr + row, scale)


def fused_available() -> bool:
    """Whether `quantize_rows_fused` can run here (Triton, with CUDA tensors or its interpreter)."""
    return triton is not None


def quantize_rows_fused(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_rows` in one Triton pass over contiguous rows `x [M, K]`."""
    rows, cols = x.shape
    q = torch.empty(rows, cols, dtype=FP8_DTYPE, device=x.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=x.device)
    if rows:
        block = triton.next_power_of_2(cols)
        _quantize_rows_kernel[(rows,)](
            x, q, scale, cols, x.stride(0), q.stride(0), FP8_MAX, INV_FP8_MAX, MIN_SCALE,
            BLOCK=block, num_warps=min(16, max(1, block // 512)),
        )  # fmt: skip
    return q, scale


def scaled_product(
    q: torch.Tensor,
    scale: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """`(q * scale) @ (weight * weight_scale^T)^T + bias` for FP8 `q [M, K]`, `weight [N, K]`, scales
    `[M, 1]` and `[1, N]`: `torch._scaled_mm` on CUDA, float32 dequantization elsewhere."""
    if q.is_cuda:
        return torch._scaled_mm(
            q, weight.t(), scale_a=scale, scale_b=weight_scale, bias=bias, out_dtype=out_dtype
        )
    return dequantized_product(q, scale, weight, weight_scale, bias).to(out_dtype)


def dequantized_product(
    q: torch.Tensor,
    scale: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """`scaled_product`'s definition in float32 (scales `[M, 1]` and `[1, N]`): what the probe holds
    `torch._scaled_mm` to, and what the CPU runs."""
    out = (q.float() * scale) @ (weight.float() * weight_scale.reshape(-1, 1)).t()
    return out if bias is None else out + bias.float()


class Fp8Linear(nn.Module):
    """`linear` evaluated as an FP8 product (see the module docstring); it keeps `linear` to hand back."""

    def __init__(self, linear: nn.Linear, quantize: Quantizer, bias_in_product: bool = True) -> None:
        super().__init__()
        self.linear = linear
        weight, weight_scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight_fp8", weight, persistent=False)  # [N, K]
        self.register_buffer("weight_scale", weight_scale.reshape(1, -1), persistent=False)  # [1, N]
        self.quantize = quantize
        self.bias_in_product = bias_in_product

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        q, scale = self.quantize(rows)
        bias = self.linear.bias
        inside = bias if self.bias_in_product else None
        out = scaled_product(q, scale, self.weight_fp8, self.weight_scale, inside, x.dtype)
        if bias is not None and inside is None:
            out = out + bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def block_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """`(parent, name, layer)` of the `BLOCK_LAYERS` of every block of `model` that `Fp8Linear` can take."""
    found = []
    for block in model.blocks:
        for path in BLOCK_LAYERS:
            parent_path, _, name = path.rpartition(".")
            parent = block.get_submodule(parent_path)
            layer = getattr(parent, name, None)
            if fits(layer):
                found.append((parent, name, layer))
    return found


def fits(linear: nn.Module) -> bool:
    """Whether `linear` is a layer `Fp8Linear` can take (an `nn.Linear` with aligned sizes)."""
    return (
        isinstance(linear, nn.Linear)
        and linear.in_features % ALIGNMENT == 0
        and linear.out_features % ALIGNMENT == 0
    )


class Fp8Layers:
    """Puts `Fp8Linear` in place of the `BLOCK_LAYERS` of every block of `model` (those that `fits`);
    `restore` hands the model its own layers back. The model's weights are not changed."""

    def __init__(self, model: nn.Module, quantize: Quantizer, bias_in_product: bool = True) -> None:
        self.swapped: list[tuple[nn.Module, str, nn.Module]] = []
        try:
            for parent, name, layer in block_layers(model):
                setattr(parent, name, Fp8Linear(layer, quantize, bias_in_product))
                self.swapped.append((parent, name, layer))
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        for parent, name, layer in reversed(self.swapped):
            setattr(parent, name, layer)
        self.swapped.clear()


PROBE_TOLERANCE = 1e-2  # rel L2 of `torch._scaled_mm` against the float32 dequantized product


def fused_quantizer_matches(x: torch.Tensor) -> bool:
    """Whether `quantize_rows_fused` gives `quantize_rows`'s bits for `x` here."""
    if not fused_available() or not (x.is_cuda or INTERPRETED):
        return False
    try:
        fused = quantize_rows_fused(x)
    except Exception:  # a Triton that cannot build the kernel: the PyTorch quantizer serves
        return False
    exact = quantize_rows(x)
    return torch.equal(fused[0].view(torch.uint8), exact[0].view(torch.uint8)) and torch.equal(
        fused[1], exact[1]
    )


def probe(
    device: torch.device, dtype: torch.dtype, rows: list[int], widths: list[int]
) -> tuple[str | None, Quantizer, bool]:
    """`(why not, quantizer, bias in the product)` for FP8 products of `rows`-row activations of `widths`
    channels on `device`: the fused quantizer where it gives `quantize_rows`'s bits at every row count and
    width, the bias inside `torch._scaled_mm` where that runs. `why not` is None when the products run and
    agree with their dequantized definition."""
    reason = unavailable_reason(device)
    if reason:
        return reason, quantize_rows, False
    g = torch.Generator(device).manual_seed(0)
    linear = nn.Linear(256, 256).to(device, dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(256, 256, generator=g, device=device) * 0.05)
    samples = [torch.randn(n, 256, generator=g, device=device).to(dtype) * 3 for n in sorted(set(rows))]
    wide = [torch.randn(min(rows), w, generator=g, device=device).to(dtype) for w in sorted(set(widths))]
    fused = all(fused_quantizer_matches(x) for x in samples + wide)
    quantize = quantize_rows_fused if fused else quantize_rows
    bias_in_product = True
    w, w_scale = quantize_rows(linear.weight.detach())
    try:
        for x in samples:
            want = dequantized_product(*quantize_rows(x), w, w_scale.reshape(1, -1), linear.bias)
            try:
                got = Fp8Linear(linear, quantize, bias_in_product)(x)
            except RuntimeError:
                if not bias_in_product:
                    raise
                bias_in_product = False  # this build takes no bias with row-wise scales: add it after
                got = Fp8Linear(linear, quantize, bias_in_product)(x)
            error = float((got.float() - want).norm() / want.norm())
            if error > PROBE_TOLERANCE:
                return (
                    f"the FP8 product differs from its definition (rel L2 {error:.1e})",
                    quantize_rows,
                    False,
                )
    except RuntimeError as exc:
        return f"the FP8 product failed: {str(exc).strip().splitlines()[0][:200]}", quantize_rows, False
    return None, quantize, bias_in_product
