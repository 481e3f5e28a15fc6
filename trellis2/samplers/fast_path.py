"""The fast sampling path: the same flow network and sampler, evaluated with less work per step.

One `FlowRunner` serves one sampling run (one stage: fixed voxels, fixed conditioning) and evaluates
the flow model for the sampler's three kinds of calls: `positive` (conditioned), `negative`
(unconditional) and `pair` (both, for a guided step). Its levers, each switchable in
`FastPathOptions`:

* `batch_guidance`: a guided step's two forwards run as one forward on a doubled batch;
* `exact_pairs`: ... but only where that batched forward gives the bits of the two forwards: at
  the first guided step, one block and the output layer run both ways and must agree exactly, else
  the run's pairs stay two forwards (a GEMM may pick another kernel, with another summation order,
  for twice the rows; in a bf16 flow a last-bit difference grows over the steps to ~4e-3);
* `cache_context`: every block's cross-attention keys and values of the image tokens are computed
  once per run instead of at every step;
* `null_context`: the unconditional branch is conditioned on all-zero tokens, whose keys are all
  equal, so its cross-attention output is one constant row per block (exactly; computed once);
* `attention_backend`: SDPA pinned to one backend, by default the fastest measured on the run's
  attention shapes (`trellis2.modules.sdpa`);
* `cuda_graphs`: each call kind is captured once as a CUDA graph (token counts are fixed within a
  run) and replayed at later steps; the first call runs eagerly and is the graph's warm-up;
* `native_norm`: the affine-free LayerNorms run in bf16 directly (float32 statistics in the kernel);
* `fused_qk`: the attentions' q/k RMS norms and RoPE run as one Triton kernel with the eager path's
  arithmetic (`trellis2.modules.fused_qk`; CUDA with Triton, not with `compile`), only where a probe
  at the run's start finds it bitwise equal to the eager code on this device;
* `fp8` (off by default, changes the outputs): the blocks' matrix products in FP8 with row-wise
  scales (`trellis2.modules.fp8_linear`; CUDA with FP8 tensor cores, not with `compile`), after a
  probe at the run's start finds `torch._scaled_mm` working at the run's row counts; its drift
  against the bf16 reference is what the benchmarks report;
* `compile` (off by default): `torch.compile` of each block; its fused kernels round every
  intermediate to bf16 where eager PyTorch does (inductor's `emulate_precision_casts`), so that
  only the order of reductions and fused multiply-adds differ from the reference.

`resolve_fast_path(None, device)` turns the fast path on for CUDA and off on the CPU, where the
reference path runs unchanged. Inputs the fast path does not cover (a conditional velocity such as
multi-view conditioning, samples of unequal token counts) run the reference path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..modules import fp8_linear, fused_qk
from ..modules.rope import rotary_cos_sin
from ..modules.sdpa import SDPA_BACKENDS, AttentionShape, probe_backends, sdpa_backend
from ..modules.sparse.tensor import SparseTensor
from ..modules.transformer import FastPathUnsupported, PreparedCondition, repeat_phases

BRANCHES = ("positive", "negative", "pair")
MIN_CALLS_TO_CAPTURE = 3  # a graph replaces eager calls from the 2nd on; capturing costs about one
COMPILE_OPTIONS = {"emulate_precision_casts": True}  # inductor: round to bf16 where eager rounds


@dataclass(frozen=True)
class FastPathOptions:
    """Levers of the fast path (see the module docstring); `attention_backend` is `"auto"`
    (measured), a name of `trellis2.modules.sdpa.SDPA_BACKENDS`, or None (PyTorch's choice)."""

    batch_guidance: bool = True
    exact_pairs: bool = True
    cache_context: bool = True
    null_context: bool = True
    attention_backend: str | None = "auto"
    cuda_graphs: bool = True
    native_norm: bool = True
    fused_qk: bool = True
    fp8: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.attention_backend not in (None, "auto", *SDPA_BACKENDS):
            raise ValueError(
                f"attention_backend {self.attention_backend!r}: use 'auto', None or one of {sorted(SDPA_BACKENDS)}"
            )


FastPathSetting = bool | str | FastPathOptions | None


def resolve_fast_path(fast: FastPathSetting, device: torch.device | str) -> FastPathOptions | None:
    """`None`/`"auto"`: the fast path on CUDA, the reference path elsewhere; `True`/`"fast"`: fast;
    `False`/`"reference"`: reference; `FastPathOptions`: those levers. Returns None for reference."""
    device = torch.device(device)
    if isinstance(fast, FastPathOptions):
        return fast
    if fast is None or fast == "auto":
        return FastPathOptions() if device.type == "cuda" else None
    if fast is True or fast == "fast":
        return FastPathOptions()
    if fast is False or fast == "reference":
        return None
    raise ValueError(
        f"fast path setting {fast!r}: use 'auto', 'fast', 'reference', a bool or FastPathOptions"
    )


@dataclass
class FastPathReport:
    """What one sampling run's fast path did (for benchmarks and logs)."""

    used: bool = False
    reason: str | None = None  # why the reference path ran instead
    options: dict[str, Any] = field(default_factory=dict)
    attention_backend: str | None = None  # pinned backend; None: PyTorch's own choice
    attention_probe: dict[str, Any] | None = None
    null_context: bool = False
    pair_probe: str | None = None  # exact | differs (pairs run as two forwards) | not checked: ...
    context_cache_mib: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    graphs: dict[str, str] = field(default_factory=dict)  # kind -> captured | eager | failed: ...
    compile_error: str | None = None
    fused_qk: str | None = None  # "exact: ..." (the fused kernel ran, and how) or why not; None: off
    fp8: str | None = None  # "used: ..." (layers, quantizer, bias) or why not; None: off

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _GraphedCall:
    """`fn(*inputs)` captured as a CUDA graph after one eager warm-up call on a side stream."""

    def __init__(self, fn: Callable[..., torch.Tensor], stream: torch.cuda.Stream) -> None:
        self.fn = fn
        self.stream = stream
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: list[torch.Tensor] = []
        self.static_output: torch.Tensor | None = None
        self.status = "eager"

    def __call__(self, inputs: list[torch.Tensor], capture: bool) -> torch.Tensor:
        if self.graph is not None:
            for static, value in zip(self.static_inputs, inputs, strict=True):
                static.copy_(value)
            self.graph.replay()
            return self.static_output.clone()
        current = torch.cuda.current_stream(self.stream.device)
        static_inputs = [value.clone() for value in inputs]
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = self.fn(*static_inputs)
        current.wait_stream(self.stream)
        out.record_stream(current)
        if capture and self.status == "eager":
            self._capture(static_inputs)
        return out

    def _capture(self, static_inputs: list[torch.Tensor]) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(self.stream):
                graph.capture_begin(capture_error_mode="thread_local")
                try:
                    output = self.fn(*static_inputs)
                finally:
                    graph.capture_end()
        except RuntimeError as exc:
            self.status = f"failed: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc!r}"
            return
        self.graph, self.static_inputs, self.static_output = graph, static_inputs, output
        self.status = "captured"


class _CompiledBlock(torch.nn.Module):
    """Calls `block.forward_fast`; one wrapper per block, all compiled from the same code."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        context: Any,
        phases: Any,
        native_norm: bool,
        fused_qk: bool = False,
    ) -> torch.Tensor:
        """`block.forward_fast` (see there)."""
        return self.block.forward_fast(x, mod, context, phases, native_norm, fused_qk)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_blocks(model: torch.nn.Module) -> list[Callable[..., torch.Tensor]]:
    """`torch.compile`d `forward_fast` of every block of `model` (built once per model)."""
    if model not in _COMPILED:
        _COMPILED[model] = [
            torch.compile(_CompiledBlock(block), options=COMPILE_OPTIONS) for block in model.blocks
        ]
    return _COMPILED[model]


def _batch_size(x: Any) -> int:
    return x.batch_size if isinstance(x, SparseTensor) else x.shape[0]


def _per_sample(cond: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if not torch.is_tensor(cond) or cond.dim() != 3 or cond.shape[0] not in (1, batch):
        raise FastPathUnsupported(f"{name} must be a [1 or {batch}, T, C] tensor")
    return cond.expand(batch, -1, -1)


class FlowRunner:
    """Evaluates `model` for one sampling run from `x` (shape and voxels of every step's latent),
    `cond` and `neg_cond` (image tokens), with extra model arguments `kwargs` (e.g. `concat_cond`).

    Raises `FastPathUnsupported` when the run does not fit the fast path. Call `close` at the end:
    it frees the cached context and the graphs.
    """

    def __init__(
        self,
        model: Any,
        x: Any,
        cond: Any,
        neg_cond: Any,
        options: FastPathOptions,
        **kwargs: Any,
    ) -> None:
        for method in ("forward_fast", "prepare_condition", "check_fast_input", "dense_tokens"):
            if not hasattr(model, method):
                raise FastPathUnsupported(f"{type(model).__name__} has no fast path")
        model.check_fast_input(x, **kwargs)
        self.model = model
        self.options = options
        self.kwargs = kwargs
        self.device = x.device
        self.batch = _batch_size(x)
        self.cond = _per_sample(cond, self.batch, "cond")
        self.neg_cond = None if neg_cond is None else _per_sample(neg_cond, self.batch, "neg_cond")
        self.tokens = int(model.dense_tokens(x, **kwargs).shape[1])
        self.cuda = self.device.type == "cuda"
        self.report = FastPathReport(used=True, options=asdict(options))
        self.null = bool(
            options.cache_context and options.null_context and self.neg_cond is not None
        ) and not bool(self.neg_cond.any())
        self.report.null_context = self.null
        phases = model.dense_phases(x)
        self.fused_qk = self._check_fused_qk()
        real_phases = options.compile or self.fused_qk
        self._phases = rotary_cos_sin(phases) if real_phases and phases is not None else phases
        self.backend = self._choose_backend()
        self.report.attention_backend = self.backend
        self.block_fns = None
        if options.compile:
            self.block_fns = compiled_blocks(model)
        self.expected: dict[str, int] = {}
        self.batch_pairs = options.batch_guidance  # decided at the first pair (`exact_pairs`)
        self._pair_checked = not options.exact_pairs
        self._pieces: dict[str, PreparedCondition | torch.Tensor] = {}
        self._conditions: dict[str, PreparedCondition | torch.Tensor] = {}
        self._graphs: dict[str, _GraphedCall] = {}
        self._stream = torch.cuda.Stream(self.device) if self.cuda and options.cuda_graphs else None
        self._fp8_layers = self._install_fp8()  # last: from here the model must be handed back (`close`)

    # --- set-up --------------------------------------------------------------------------------
    def _check_fused_qk(self) -> bool:
        """`fused_qk`: the kernel runs only where it gives the eager code's bits on this device."""
        if not self.options.fused_qk:
            return False
        if self.options.compile or not self.cuda or not fused_qk.available():
            self.report.fused_qk = "not used: needs CUDA and Triton, and no compile"
            return False
        attn = self.model.blocks[0].self_attn
        variant = fused_qk.exact_variant(self.device, self.model.dtype, attn.num_heads, attn.head_dim)
        exact = f"exact: sums {variant[0]}, RoPE {variant[1]}" if variant else None
        self.report.fused_qk = exact or "differs: eager q/k norms and RoPE"
        return variant is not None

    def _install_fp8(self) -> fp8_linear.Fp8Layers | None:
        """`fp8`: the blocks' layers run as FP8 products from here to `close`, where a probe allows."""
        if not self.options.fp8:
            return None
        if self.options.compile:
            self.report.fp8 = "not used: not with compile"
            return None
        rows = self.batch * self.tokens  # and twice that for a pair; the zero-token constant is a few rows
        counts = [1, self.cond.shape[1], rows, 2 * rows]
        widths = [layer.in_features for _, _, layer in fp8_linear.block_layers(self.model)]
        reason, quantize, bias_in_product = fp8_linear.probe(self.device, self.model.dtype, counts, widths)
        if reason:
            self.report.fp8 = f"not used: {reason}"
            return None
        layers = fp8_linear.Fp8Layers(self.model, quantize, bias_in_product)
        fused = "Triton" if quantize is fp8_linear.quantize_rows_fused else "PyTorch"
        bias = "in the product" if bias_in_product else "added after"
        self.report.fp8 = f"used: {len(layers.swapped)} layers, {fused} quantizer, bias {bias}"
        return layers

    def _choose_backend(self) -> str | None:
        name = self.options.attention_backend
        if name != "auto":
            return name
        if not self.cuda:
            return None  # the CPU keeps PyTorch's choice (as the reference path)
        heads, head_dim = self.model.num_heads, self.model.head_dim
        rows = 2 * self.batch if self.options.batch_guidance else self.batch
        cross_rows = self.batch if self.null or not self.options.batch_guidance else rows
        shapes = [
            AttentionShape(rows, self.tokens, self.tokens, heads, head_dim),
            AttentionShape(cross_rows, self.tokens, self.cond.shape[1], heads, head_dim),
        ]
        probe = probe_backends(shapes, self.model.dtype, self.device, graph_capture=self.options.cuda_graphs)
        self.report.attention_probe = probe.as_dict()
        return probe.chosen

    def expect(self, counts: dict[str, int]) -> None:
        """How many calls of each kind the run will make (graphs are captured only where it pays)."""
        self.expected = dict(counts)

    def _check_pair(self, x: Any, t_model: torch.Tensor) -> None:
        """`exact_pairs`: the batched pair against two forwards through the first block and the
        output layer, at this run's shapes and on its inputs; unless bitwise equal, pairs run as two
        forwards from now on. Compiled blocks are not checked (they are not exact anyway)."""
        self._pair_checked = True
        if self.block_fns is not None:
            self.report.pair_probe = "not checked: compiled blocks"
            return
        tokens = self.model.dense_tokens(x, **self.kwargs)
        t_model = t_model.to(device=self.device, dtype=torch.float32)
        out = {}
        with sdpa_backend(self.backend):
            for kind in BRANCHES:
                condition = self._condition(kind)
                repeat = 2 if kind == "pair" else 1
                out[kind] = self.model.forward_fast(
                    tokens,
                    t_model,
                    condition,
                    self._phases_for(kind),
                    repeat,
                    self.options.native_norm,
                    num_blocks=1,
                    fused_qk=self.fused_qk,
                )
        pair = out["pair"]
        exact = torch.equal(pair[: self.batch], out["positive"]) and torch.equal(
            pair[self.batch :], out["negative"]
        )
        self.report.pair_probe = "exact" if exact else "differs: pairs run as two forwards"
        if not exact:
            self.batch_pairs = False
            self._conditions.pop("pair", None)
            pairs = self.expected.pop("pair", 0)
            for kind in ("positive", "negative"):
                self.expected[kind] = self.expected.get(kind, 0) + pairs

    def _piece(self, name: str) -> PreparedCondition | torch.Tensor:
        if name not in self._pieces:
            if name == "pos":
                piece = self.model.prepare_condition(self.cond) if self.options.cache_context else self.cond
            elif self.null:
                piece = self.model.prepare_condition(None, self.neg_cond, self.tokens)
            else:
                piece = (
                    self.model.prepare_condition(self.neg_cond)
                    if self.options.cache_context
                    else self.neg_cond
                )
            self._pieces[name] = piece
        return self._pieces[name]

    def _condition(self, kind: str) -> PreparedCondition | torch.Tensor:
        if kind not in self._conditions:
            if kind == "positive":
                condition = self._piece("pos")
            elif kind == "negative":
                condition = self._piece("neg")
            else:
                condition = _pair_condition(self._piece("pos"), self._piece("neg"))
            self._conditions[kind] = condition
            self.report.context_cache_mib = (
                sum(c.nbytes() for c in self._pieces.values() if isinstance(c, PreparedCondition)) / 2**20
            )
        return self._conditions[kind]

    def _phases_for(self, kind: str) -> Any:
        """Phases for the call's rows, repeated here once rather than inside every forward."""
        return repeat_phases(self._phases, self.batch, 2) if kind == "pair" else self._phases

    # --- evaluation ----------------------------------------------------------------------------
    def _forward(self, kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        condition, phases = self._condition(kind), self._phases_for(kind)
        repeat = 2 if kind == "pair" else 1

        def forward(tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with sdpa_backend(self.backend):
                return self.model.forward_fast(
                    tokens,
                    t,
                    condition,
                    phases,
                    repeat,
                    self.options.native_norm,
                    self.block_fns,
                    fused_qk=self.fused_qk,
                )

        return forward

    def _run(self, kind: str, x: Any, t_model: torch.Tensor) -> torch.Tensor:
        self.report.calls[kind] = self.report.calls.get(kind, 0) + 1
        tokens = self.model.dense_tokens(x, **self.kwargs)
        t_model = t_model.to(device=self.device, dtype=torch.float32)
        try:
            return self._evaluate(kind, tokens, t_model)
        except Exception as exc:
            if self.block_fns is None:
                raise
            # A compiler failure (first call of a kind): run the eager blocks from now on.
            self.report.compile_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            self.block_fns = None
            self._graphs.pop(kind, None)
            return self._evaluate(kind, tokens, t_model)

    def _evaluate(self, kind: str, tokens: torch.Tensor, t_model: torch.Tensor) -> torch.Tensor:
        if self._stream is None:
            return self._forward(kind)(tokens, t_model)
        if kind not in self._graphs:
            self._graphs[kind] = _GraphedCall(self._forward(kind), self._stream)
        call = self._graphs[kind]
        out = call([tokens, t_model], capture=self.expected.get(kind, 1 << 30) >= MIN_CALLS_TO_CAPTURE)
        self.report.graphs[kind] = call.status
        return out

    def positive(self, x: Any, t_model: torch.Tensor) -> Any:
        """Conditional velocity at `x`."""
        return self.model.from_dense_tokens(x, self._run("positive", x, t_model))

    def negative(self, x: Any, t_model: torch.Tensor) -> Any:
        """Unconditional velocity at `x`."""
        return self.model.from_dense_tokens(x, self._run("negative", x, t_model))

    def pair(self, x: Any, t_model: torch.Tensor) -> tuple[Any, Any]:
        """Conditional and unconditional velocities at `x`: one batched forward, or two forwards
        without `batch_guidance` or where the batched forward is not exact (`exact_pairs`)."""
        if self.batch_pairs and not self._pair_checked:
            self._check_pair(x, t_model)
        if not self.batch_pairs:
            return self.positive(x, t_model), self.negative(x, t_model)
        out = self._run("pair", x, t_model)
        return (
            self.model.from_dense_tokens(x, out[: self.batch]),
            self.model.from_dense_tokens(x, out[self.batch :]),
        )

    def close(self) -> None:
        """Free the cached context, the graphs and their memory pools; give the model its own layers back."""
        if self._fp8_layers is not None:
            self._fp8_layers.restore()
            self._fp8_layers = None
        self._graphs.clear()
        self._conditions.clear()
        self._pieces.clear()
        self._stream = None


def _pair_condition(
    pos: PreparedCondition | torch.Tensor, neg: PreparedCondition | torch.Tensor
) -> PreparedCondition | torch.Tensor:
    """Conditioning of the doubled batch `[positive rows; negative rows]`."""
    if torch.is_tensor(pos):
        return torch.cat([pos, neg])
    blocks = []
    for p, n in zip(pos.blocks, neg.blocks, strict=True):
        if n.null_rows:  # negative rows take the constant: keys/values only for the positive rows
            blocks.append(type(p)(p.kv, n.null_out, n.null_rows))
        else:
            kv = tuple(torch.cat([a, b]) for a, b in zip(p.kv, n.kv, strict=True))
            blocks.append(type(p)(kv))
    return PreparedCondition(blocks, pos.batch_size + neg.batch_size)


__all__ = [
    "BRANCHES",
    "FastPathOptions",
    "FastPathReport",
    "FastPathSetting",
    "FlowRunner",
    "compiled_blocks",
    "resolve_fast_path",
]
