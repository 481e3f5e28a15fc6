"""Choosing the `scaled_dot_product_attention` backend: by name, or the fastest one measured on the
attention shapes a sampling run will use.

PyTorch picks a backend per call (flash, memory-efficient, cuDNN, math) from its own priority list.
`sdpa_backend(name)` pins one (`torch.nn.attention.sdpa_kernel`), so the kernel that runs is the one
named, or the call fails (no silent fallback). `probe_backends` times each candidate on given
shapes, in the layouts the flow models pass (`[B, L, H, D]` views, see `attention.dense_attention`),
checks its output against a float32 reference on a slice of the queries (and, when the run will
use CUDA graphs, that the calls can be captured), and picks the fastest candidate that passed.
Results are cached per shape set for the process.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .attention import dense_attention

SDPA_BACKENDS: dict[str, SDPBackend] = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
PROBE_CANDIDATES: tuple[str, ...] = ("cudnn", "flash", "efficient")
PROBE_MAX_REL_L2 = 1e-2  # a backend further than this from float32 attention is not used
PROBE_CHECK_QUERIES = 256  # query rows checked against the float32 reference


@contextlib.contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """Run SDPA inside with exactly backend `name` (`None`: PyTorch's own choice)."""
    if name is None:
        yield
        return
    if name not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {name!r}; use one of {sorted(SDPA_BACKENDS)}")
    with sdpa_kernel([SDPA_BACKENDS[name]]):
        yield


@dataclass(frozen=True)
class AttentionShape:
    """One attention call: `q [batch, queries, heads, head_dim]`, `k, v [batch, keys, heads, head_dim]`."""

    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int

    def describe(self) -> str:
        return f"{self.batch}x{self.heads}x{self.queries}q x {self.keys}k x d{self.head_dim}"


@dataclass
class ProbeResult:
    """Per backend: milliseconds for all shapes, or why it cannot be used."""

    shapes: list[str]
    ms: dict[str, float] = field(default_factory=dict)
    rel_l2: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    chosen: str | None = None

    def as_dict(self) -> dict:
        return {
            "shapes": self.shapes,
            "ms": self.ms,
            "rel_l2_vs_fp32": self.rel_l2,
            "errors": self.errors,
            "chosen": self.chosen,
        }


_PROBE_CACHE: dict[tuple, ProbeResult] = {}


def _probe_inputs(
    shape: AttentionShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k contiguous `[B, L, H, D]` (as after RMS norm / RoPE), v a strided view of a packed
    projection (as `unbind` of the `to_qkv` / `to_kv` output leaves it)."""
    b, h, d = shape.batch, shape.heads, shape.head_dim
    q = torch.randn(b, shape.queries, h, d, generator=gen, device=device, dtype=torch.float32).to(dtype)
    kv = torch.randn(b, shape.keys, 2, h, d, generator=gen, device=device, dtype=torch.float32).to(dtype)
    k = kv[:, :, 0].contiguous()
    return q, k, kv[:, :, 1]


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    rows = q[:, :PROBE_CHECK_QUERIES].float().transpose(1, 2)
    out = F.scaled_dot_product_attention(rows, k.float().transpose(1, 2), v.float().transpose(1, 2))
    return out.transpose(1, 2)


def _time_ms(fn, device: torch.device, iters: int) -> float:
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) * 1000 / iters
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / iters


def _capture_check(
    inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device
) -> None:
    """Raise unless the attention calls on `inputs` can be captured in a CUDA graph (current backend)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        for q, k, v in inputs:  # warm-up on the capturing stream
            dense_attention(q, k, v)
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            for q, k, v in inputs:
                dense_attention(q, k, v)
        finally:
            graph.capture_end()
    torch.cuda.current_stream(device).wait_stream(stream)
    del graph


def probe_backends(
    shapes: Sequence[AttentionShape],
    dtype: torch.dtype,
    device: torch.device,
    candidates: Sequence[str] = PROBE_CANDIDATES,
    iters: int = 2,
    graph_capture: bool = False,
) -> ProbeResult:
    """Time every candidate backend on `shapes` (one warm-up, `iters` timed calls each) and check
    it against float32 attention (and, with `graph_capture` on CUDA, that it can be captured in a
    CUDA graph); the fastest that ran and passed is `chosen` (None if none did)."""
    graph_capture = graph_capture and torch.device(device).type == "cuda"
    key = (tuple(shapes), dtype, str(device), tuple(candidates), iters, graph_capture)
    if key in _PROBE_CACHE:
        return _PROBE_CACHE[key]
    result = ProbeResult([s.describe() for s in shapes])
    gen = torch.Generator(device=device).manual_seed(0)
    inputs = [_probe_inputs(s, dtype, device, gen) for s in shapes]
    references = [_reference(*qkv) for qkv in inputs]
    for name in candidates:
        try:
            with warnings.catch_warnings(), sdpa_backend(name), torch.no_grad():
                warnings.simplefilter("ignore")
                worst = 0.0
                for (q, k, v), ref in zip(inputs, references, strict=True):
                    out = dense_attention(q, k, v)[:, :PROBE_CHECK_QUERIES].float()
                    worst = max(worst, float((out - ref).norm() / ref.norm().clamp_min(1e-30)))
                if not math.isfinite(worst) or worst > PROBE_MAX_REL_L2:
                    result.errors[name] = f"relative L2 {worst:.2e} against float32 attention"
                    continue
                if graph_capture:
                    try:
                        _capture_check(inputs, device)
                    except RuntimeError as exc:
                        result.errors[name] = f"cannot be captured in a CUDA graph: {_first_line(exc)}"
                        continue
                result.rel_l2[name] = worst
                result.ms[name] = sum(
                    _time_ms(lambda q=q, k=k, v=v: dense_attention(q, k, v), device, iters)
                    for q, k, v in inputs
                )
        except RuntimeError as exc:  # "No available kernel" and kernel-specific refusals
            result.errors[name] = _first_line(exc)
    if result.ms:
        result.chosen = min(result.ms, key=result.ms.__getitem__)
    del inputs, references
    _PROBE_CACHE[key] = result
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else repr(exc)


def clear_probe_cache() -> None:
    """Forget measured backend choices (tests, or after changing PyTorch settings)."""
    _PROBE_CACHE.clear()


__all__ = [
    "AttentionShape",
    "PROBE_CANDIDATES",
    "ProbeResult",
    "SDPA_BACKENDS",
    "clear_probe_cache",
    "probe_backends",
    "sdpa_backend",
]
