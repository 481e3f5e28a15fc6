"""Benchmark one forward pass of every real-size TRELLIS.2 network (random weights, runtime dtypes).

Models are built on the `meta` device, materialised directly on the target device (`to_empty`) and
filled with seeded random weights, one at a time (`low_vram` style: each model is freed before the
next). Flows run in bfloat16, decoders in float16, as the released checkpoints. Inputs are realistic
in size: a 16^3 structure latent, sparse latents on a sphere shell of a 64^3 grid (4096 and 32768
tokens) with 1029 image tokens, and shape/texture decoders from a ~15k-voxel 64^3 shell to 1024^3.

    python tools/bench_models.py --device cuda --out bench/models.json
    python tools/bench_models.py --device cpu --quick          # tiny configs, seconds, smoke test
    python tools/bench_models.py --checkpoint-dir /tmp/ckpt    # also time from_pretrained of each file

Prints the hardware and a table (model, parameters, input, seconds after a warm-up, peak GPU memory)
and writes the same as JSON and Markdown (`--out x.json` also writes `x.md`).

    python tools/bench_models.py --compare-reference --out docs/benchmarks/models-compare-h200.json
    python tools/bench_models.py --compare-reference --device cpu --quick   # smoke test

`--compare-reference` times the flow models only, reference path against the fast path
(`trellis2.samplers.fast_path`) in one process on the same device: ms per forward and per guided
step (the CFG pair), each lever added in turn, peak memory, the attention backend chosen and the
attention ops / kernels that actually ran (profiler), and the relative L2 of fast against reference
outputs (bf16 flows; bound 2e-3). `--fp8` adds a row for the opt-in FP8 matrix products
(`trellis2.modules.fp8_linear`), whose relative L2 is their drift, not held to the bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python tools/bench_models.py` from anywhere, nothing installed
    sys.path.insert(0, str(REPO_ROOT))

from trellis2.models import from_pretrained, model_class  # noqa: E402
from trellis2.modules.sparse import SparseTensor  # noqa: E402
from trellis2.samplers.fast_path import FastPathOptions, FlowRunner  # noqa: E402

DIT = dict(
    model_channels=1536,
    cond_channels=1024,
    num_blocks=30,
    num_heads=12,
    mlp_ratio=5.3334,
    pe_mode="rope",
    share_mod=True,
    qk_rms_norm=True,
    qk_rms_norm_cross=True,
    dtype="bfloat16",
)
TINY_DIT = dict(DIT, model_channels=64, cond_channels=32, num_blocks=2, num_heads=4)
SPARSE_DEC = dict(
    model_channels=[1024, 512, 256, 128, 64],
    latent_channels=32,
    num_blocks=[4, 16, 8, 4, 0],
    block_type=["SparseConvNeXtBlock3d"] * 5,
    up_block_type=["SparseResBlockC2S3d"] * 4,
    block_args=[{}] * 5,
    use_fp16=True,
)
TINY_SPARSE_DEC = dict(SPARSE_DEC, model_channels=[32, 16, 16, 8, 8], num_blocks=[1, 1, 1, 1, 0])
SS_DEC = dict(
    out_channels=1,
    latent_channels=8,
    num_res_blocks=2,
    num_res_blocks_middle=2,
    channels=[512, 128, 32],
    use_fp16=True,
)
TINY_SS_DEC = dict(SS_DEC, channels=[32, 16, 8])


@dataclass
class Sizes:
    """Input sizes of one benchmark run."""

    cond_tokens: int = 1029
    slat_grid: int = 64
    slat_tokens: tuple[int, ...] = (4096, 32768)
    decoder_grid: int = 64
    decoder_voxels: int = 15000
    decoder_resolution: int = 1024


QUICK = Sizes(
    cond_tokens=77,
    slat_grid=16,
    slat_tokens=(256, 1024),
    decoder_grid=8,
    decoder_voxels=120,
    decoder_resolution=128,
)


@dataclass
class Case:
    name: str
    class_name: str
    args: dict[str, Any]
    describe_input: str
    run: Callable[[torch.nn.Module, dict], Any]  # (model, shared state) -> output
    stored_dtype: torch.dtype | None = None  # dtype of every tensor in the released file (None: as in memory)


@dataclass
class Result:
    name: str
    class_name: str
    params: int
    input: str
    seconds: float | None = None
    seconds_all: list[float] = field(default_factory=list)
    load_seconds: float | None = None
    weights_gib: float | None = None
    peak_gib: float | None = None
    error: str | None = None


def shell_coords(grid: int, count: int, device: torch.device) -> torch.Tensor:
    """The `count` voxels of a `grid^3` box closest to a centred sphere (radius 0.45 grid), as int32
    `[count, 4]` (batch 0) in lexicographic order: a surface-like sparse structure."""
    axis = torch.arange(grid, device=device)
    xyz = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    dist = ((xyz.float() + 0.5 - grid / 2).norm(dim=-1) - 0.45 * grid).abs()
    if count > xyz.shape[0]:
        raise ValueError(f"{count} voxels do not fit in a {grid}^3 grid")
    chosen = xyz[dist.argsort()[:count].sort().values]
    return torch.cat([torch.zeros_like(chosen[:, :1]), chosen], dim=1).int()


def init_random_(model: torch.nn.Module, seed: int = 0) -> None:
    """Seeded random weights: matrices/kernels N(0, 1/fan_in), norm gains 1, biases and vectors 0."""
    gen = torch.Generator(device=model_device(model)).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not name.endswith("gamma"):
                fan_in = p[0].numel()
                p.copy_(
                    torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32) / fan_in**0.5
                )
            elif name.endswith("gamma") or (name.endswith("weight") and "norm" in name):
                p.fill_(1.0)
            else:
                p.zero_()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def build_random(class_name: str, args: dict[str, Any], device: torch.device) -> torch.nn.Module:
    with torch.device("meta"):
        model = model_class(class_name)(**args)
    model = model.to_empty(device=device)
    init_random_(model)
    for module in model.modules():
        if hasattr(module, "reset_derived_buffers"):
            module.reset_derived_buffers()
    return model.eval().requires_grad_(False)


def save_checkpoint(case: Case, model: torch.nn.Module, folder: Path) -> Path:
    """Write `model` as a released-style checkpoint (`<name>.json` + `.safetensors` in the stored dtypes)."""
    path = folder / case.name
    state = {
        k: (v.to(case.stored_dtype) if case.stored_dtype is not None else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path) + ".safetensors")
    Path(str(path) + ".json").write_text(json.dumps({"name": case.class_name, "args": case.args}))
    return path


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def make_cases(quick: bool, device: torch.device) -> list[Case]:
    s = QUICK if quick else Sizes()
    dit = TINY_DIT if quick else DIT
    sparse_dec = TINY_SPARSE_DEC if quick else SPARSE_DEC
    ss_dec = TINY_SS_DEC if quick else SS_DEC
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device)

    cond = randn(1, s.cond_tokens, dit["cond_channels"])
    t = torch.full((1,), 500.0, device=device)
    ss_res = 8 if quick else 16
    cases = [
        Case(
            "ss_flow",
            "SparseStructureFlowModel",
            dict(resolution=ss_res, in_channels=8, out_channels=8, **dit),
            f"[1, 8, {ss_res}^3] = {ss_res**3} tokens, cond {s.cond_tokens}",
            lambda m, st: m(randn(1, 8, ss_res, ss_res, ss_res), t, cond),
            torch.bfloat16,
        ),
    ]
    for n in s.slat_tokens:
        coords = shell_coords(s.slat_grid, n, device)
        cases.append(
            Case(
                f"shape_flow_{n}",
                "SLatFlowModel",
                dict(resolution=s.slat_grid, in_channels=32, out_channels=32, **dit),
                f"{n} tokens on a {s.slat_grid}^3 shell, cond {s.cond_tokens}",
                lambda m, st, c=coords: m(SparseTensor(randn(c.shape[0], 32), c), t, cond),
                torch.bfloat16,
            )
        )
        cases.append(
            Case(
                f"tex_flow_{n}",
                "SLatFlowModel",
                dict(resolution=s.slat_grid, in_channels=64, out_channels=32, **dit),
                f"{n} tokens (32 + 32 concat ch), cond {s.cond_tokens}",
                lambda m, st, c=coords: m(
                    SparseTensor(randn(c.shape[0], 32), c),
                    t,
                    cond,
                    concat_cond=SparseTensor(randn(c.shape[0], 32), c),
                ),
                torch.bfloat16,
            )
        )
    cases.append(
        Case(
            "ss_decoder",
            "SparseStructureDecoder",
            ss_dec,
            f"[1, 8, {ss_res}^3] -> {4 * ss_res}^3 logits",
            lambda m, st: m(randn(1, 8, ss_res, ss_res, ss_res)),
        )
    )
    latent_coords = shell_coords(s.decoder_grid, s.decoder_voxels, device)

    def run_shape_decoder(model: torch.nn.Module, state: dict) -> Any:
        model.set_resolution(s.decoder_resolution)
        latent = SparseTensor(randn(latent_coords.shape[0], 32), latent_coords)
        meshes, subs = model(latent, return_subs=True)
        state["latent"], state["subs"] = latent, subs  # guides for the texture decoder
        state["output"] = f"{sum(int(m.faces.shape[0]) for m in meshes)} faces"
        return meshes

    def run_tex_decoder(model: torch.nn.Module, state: dict) -> Any:
        if "subs" not in state:
            raise RuntimeError(
                "the texture decoder needs the shape decoder's subdivisions (run shape_decoder first)"
            )
        out = model(state["latent"], guide_subs=state["subs"])
        state["output"] = f"{out.feats.shape[0]} voxels"
        return out

    describe = f"{latent_coords.shape[0]} voxels on a {s.decoder_grid}^3 shell -> {s.decoder_resolution}^3"
    cases.append(
        Case(
            "shape_decoder",
            "FlexiDualGridVaeDecoder",
            dict(resolution=s.decoder_resolution, **sparse_dec),
            describe + " (+ mesh extraction)",
            run_shape_decoder,
            torch.float16,
        )
    )
    cases.append(
        Case(
            "tex_decoder",
            "SparseUnetVaeDecoder",
            dict(out_channels=6, pred_subdiv=False, **sparse_dec),
            describe + " (guided by the shape decoder)",
            run_tex_decoder,
            torch.float16,
        )
    )
    return cases


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(
    case: Case, device: torch.device, repeats: int, state: dict, checkpoint_dir: Path | None = None
) -> Result:
    cuda = device.type == "cuda"
    result = Result(case.name, case.class_name, 0, case.describe_input)
    model = None
    try:
        free_memory(device)
        model = build_random(case.class_name, case.args, device)
        if checkpoint_dir is not None:  # round trip through a file: the load path the pipeline uses
            path = save_checkpoint(case, model, checkpoint_dir)
            model = None
            free_memory(device)
            start = time.perf_counter()
            model = from_pretrained(path, device=device)
            synchronize(device)
            result.load_seconds = time.perf_counter() - start
            for suffix in (".json", ".safetensors"):
                Path(str(path) + suffix).unlink()
        result.params = sum(p.numel() for p in model.parameters())
        if cuda:
            result.weights_gib = torch.cuda.memory_allocated(device) / 2**30
        with torch.inference_mode():
            case.run(model, state)  # warm-up (kernel selection, caches)
            synchronize(device)
            for _ in range(repeats):
                start = time.perf_counter()
                case.run(model, state)
                synchronize(device)
                result.seconds_all.append(time.perf_counter() - start)
        result.seconds = statistics.median(result.seconds_all)
        if "output" in state:
            result.input += f" => {state.pop('output')}"
        if cuda:
            result.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    except (RuntimeError, ValueError) as e:  # e.g. out of memory: record it and go on with the next model
        result.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return result


def hardware(device: torch.device) -> dict[str, Any]:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(info: dict[str, Any], results: list[Result], quick: bool) -> str:
    lines = [
        f"# Model benchmark{' (quick, tiny configs)' if quick else ''}",
        "",
        ", ".join(f"{k}: {v}" for k, v in info.items()),
        "",
        "| model | class | params | input | seconds | load s | weights GiB | peak GiB |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        secs = r.error if r.error else _fmt(r.seconds, ".3f")
        lines.append(
            f"| {r.name} | {r.class_name} | {r.params:,} | {r.input} | {secs} | {_fmt(r.load_seconds, '.2f')} | "
            f"{_fmt(r.weights_gib, '.2f')} | {_fmt(r.peak_gib, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


# --- reference against fast path (--compare-reference) -------------------------------------------
REL_L2_BOUND = 2e-3  # fast against reference, per forward and on every stage's final latent (bf16)
LEVELS: list[tuple[str, dict[str, Any]]] = [  # levers added one at a time; the last row is the fast path
    (
        "attention backend",
        dict(
            batch_guidance=False,
            cache_context=False,
            null_context=False,
            cuda_graphs=False,
            native_norm=False,
            fused_qk=False,
        ),
    ),
    (
        "+ context cache, null context",
        dict(batch_guidance=False, cuda_graphs=False, native_norm=False, fused_qk=False),
    ),
    ("+ batched CFG pair", dict(cuda_graphs=False, native_norm=False, fused_qk=False)),
    ("+ native LayerNorm", dict(cuda_graphs=False, fused_qk=False)),
    ("+ CUDA graphs", dict(fused_qk=False)),
    ("+ fused q/k norm and RoPE (= fast path)", dict()),
]
FAST_LABEL = LEVELS[-1][0]
COMPILE_LEVEL = ("+ torch.compile blocks", dict(compile=True))
DEFAULT_BACKEND_LEVEL = ("fast path, PyTorch's own SDPA choice", dict(attention_backend=None))
FP8_LEVEL = ("fast path + FP8 matrix products (opt-in; changes the outputs)", dict(fp8=True))
FP32_CHECK_MAX_TOKENS = 16384  # the bf16-against-float32 context figure is computed up to this size
ATTENTION_KERNEL_WORDS = ("attention", "attn", "fmha", "flash", "sdpa", "cudnn", "softmax")


@dataclass
class CompareCase:
    name: str
    class_name: str
    args: dict[str, Any]
    describe_input: str
    make_inputs: Callable[[], tuple[Any, dict[str, Any]]]  # -> (x, model kwargs)
    cond_tokens: int
    tokens: int


def make_compare_cases(quick: bool, device: torch.device) -> list[CompareCase]:
    """Flow forwards at the token counts of the pipeline's stages (issue 15's table)."""
    dit = TINY_DIT if quick else DIT
    gen = torch.Generator(device=device).manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device)

    ss_res = 8 if quick else 16
    cond_lr, cond_hr = (77, 93) if quick else (1029, 4101)
    grid = 16 if quick else 64
    sparse = (
        [(64, cond_lr), (256, cond_hr)] if quick else [(2400, cond_lr), (9600, cond_hr), (32768, cond_hr)]
    )
    cases = [
        CompareCase(
            "ss_flow",
            "SparseStructureFlowModel",
            dict(resolution=ss_res, in_channels=8, out_channels=8, **dit),
            f"[1, 8, {ss_res}^3] = {ss_res**3} tokens, cond {cond_lr}",
            lambda: (randn(1, 8, ss_res, ss_res, ss_res), {}),
            cond_lr,
            ss_res**3,
        )
    ]
    for tokens, cond_tokens in sparse:
        coords = shell_coords(grid, tokens, device)
        cases.append(
            CompareCase(
                f"shape_flow_{tokens}",
                "SLatFlowModel",
                dict(resolution=grid, in_channels=32, out_channels=32, **dit),
                f"{tokens} tokens on a {grid}^3 shell, cond {cond_tokens}",
                lambda c=coords: (SparseTensor(randn(c.shape[0], 32), c), {}),
                cond_tokens,
                tokens,
            )
        )
    tokens, cond_tokens = sparse[-2]
    coords = shell_coords(grid, tokens, device)
    cases.append(
        CompareCase(
            f"tex_flow_{tokens}",
            "SLatFlowModel",
            dict(resolution=grid, in_channels=64, out_channels=32, **dit),
            f"{tokens} tokens (32 + 32 concat ch), cond {cond_tokens}",
            lambda c=coords: (
                SparseTensor(randn(c.shape[0], 32), c),
                {"concat_cond": SparseTensor(randn(c.shape[0], 32), c)},
            ),
            cond_tokens,
            tokens,
        )
    )
    return cases


def _feats(v: Any) -> torch.Tensor:
    return (v.feats if isinstance(v, SparseTensor) else v).float()


def rel_l2(a: Any, b: Any) -> float:
    """`||a - b|| / ||b||` of two outputs (tensors or sparse features)."""
    fa, fb = _feats(a), _feats(b)
    return float((fa - fb).norm() / fb.norm().clamp_min(1e-30))


def _median_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def attention_ops(fn: Callable[[], Any], device: torch.device) -> dict[str, list[str]]:
    """The attention operators dispatched and (on CUDA) the attention kernels launched by `fn`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with profile(activities=activities) as prof:
            fn()
            synchronize(device)
    except Exception as exc:  # noqa: BLE001 - the profiler is a diagnostic; never fail the bench on it
        return {"ops": [], "kernels": [], "error": [f"{type(exc).__name__}: {exc}"[:200]]}
    ops, kernels = set(), set()
    for event in prof.events():
        name = event.name
        if event.device_type == torch.autograd.DeviceType.CUDA:
            if any(w in name.lower() for w in ATTENTION_KERNEL_WORDS):
                kernels.add(name[:160])
        elif name.startswith("aten::") and "attention" in name:
            ops.add(name)
    return {"ops": sorted(ops), "kernels": sorted(kernels)}


def compare_case(
    case: CompareCase,
    device: torch.device,
    repeats: int,
    levels: list[tuple[str, dict[str, Any]]],
    attention_backend: str | None,
) -> dict[str, Any]:
    """Reference and fast path on one random real-size (or tiny) flow model."""
    row: dict[str, Any] = {"name": case.name, "class": case.class_name, "input": case.describe_input}
    model = None
    try:
        free_memory(device)
        model = build_random(case.class_name, case.args, device)
        row["params"] = sum(p.numel() for p in model.parameters())
        x, kwargs = case.make_inputs()
        gen = torch.Generator(device=device).manual_seed(2)
        cond = torch.randn(1, case.cond_tokens, case.args["cond_channels"], generator=gen, device=device)
        neg = torch.zeros_like(cond)
        t = torch.full((1,), 700.0, device=device)
        with torch.inference_mode():
            _reset_peak(device)
            ref_pos, ref_neg = model(x, t, cond, **kwargs), model(x, t, neg, **kwargs)
            x2 = x.replace(x.feats * 0.5 + 0.1) if isinstance(x, SparseTensor) else x * 0.5 + 0.1
            t2 = torch.full((1,), 300.0, device=device)
            points = [
                Point(x, t, ref_pos, ref_neg),  # the first call (warm-up, capture) and the timed ones
                Point(x2, t2, model(x2, t2, cond, **kwargs), model(x2, t2, neg, **kwargs)),  # a replay
            ]
            row["reference"] = {
                "forward_ms": _median_ms(lambda: model(x, t, cond, **kwargs), device, repeats),
                "pair_ms": _median_ms(
                    lambda: (model(x, t, cond, **kwargs), model(x, t, neg, **kwargs)), device, repeats
                ),
                "peak_gib": _peak_gib(device),
                "attention": attention_ops(lambda: model(x, t, cond, **kwargs), device),
            }
            print(
                f"  reference: forward {row['reference']['forward_ms']:.1f} ms, "
                f"CFG pair {row['reference']['pair_ms']:.1f} ms",
                flush=True,
            )
            row["levels"] = []
            for label, overrides in levels:
                options = FastPathOptions(**{"attention_backend": attention_backend, **overrides})
                row["levels"].append(
                    compare_level(label, options, model, cond, neg, kwargs, points, device, repeats)
                )
                lv = row["levels"][-1]
                print(
                    f"  {label:<32} forward {lv['forward_ms']:.1f} ms, pair {lv['pair_ms']:.1f} ms, "
                    f"rel L2 {lv['rel_l2_max']:.1e}, backend {lv['attention_backend']}, graphs {lv['graphs']}",
                    flush=True,
                )
            final = next(lv for lv in row["levels"] if lv["label"] == FAST_LABEL)
            if case.tokens <= FP32_CHECK_MAX_TOKENS:  # float32 attention without tensor cores is slow
                row["reference"]["rel_l2_bf16_vs_fp32"] = bf16_error(model, x, t, cond, kwargs, ref_pos)
            profile_options = FastPathOptions(attention_backend=attention_backend, cuda_graphs=False)
            runner = FlowRunner(model, x, cond, neg, profile_options, **kwargs)
            runner.pair(x, t)
            final["attention"] = attention_ops(lambda: runner.pair(x, t), device)
            runner.close()
        ref = row["reference"]
        row["speedup_forward"] = ref["forward_ms"] / final["forward_ms"]
        row["speedup_pair"] = ref["pair_ms"] / final["pair_ms"]
        row["rel_l2_max"] = final["rel_l2_max"]
        row["within_bound"] = final["rel_l2_max"] <= REL_L2_BOUND
    except (RuntimeError, ValueError) as e:  # e.g. out of memory: record it and go on
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        model = None
        free_memory(device)
    return row


def bf16_error(
    model: torch.nn.Module, x: Any, t: torch.Tensor, cond: torch.Tensor, kwargs: dict[str, Any], ref: Any
) -> float | None:
    """Relative L2 of the bf16 reference output against the same weights in float32 (no TF32):
    the scale of rounding differences that any bf16 evaluation has."""
    if model.dtype == torch.float32:
        return None
    dtype = model.dtype
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model.convert_to(torch.float32)  # bf16 -> fp32 -> bf16 is exact
        return rel_l2(ref, model(x, t, cond, **kwargs))
    finally:
        model.convert_to(dtype)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class Point:
    """Inputs of one evaluation and the reference outputs there."""

    x: Any
    t: torch.Tensor
    ref_pos: Any
    ref_neg: Any


def compare_level(
    label: str,
    options: FastPathOptions,
    model: torch.nn.Module,
    cond: torch.Tensor,
    neg: torch.Tensor,
    kwargs: dict[str, Any],
    points: list[Point],
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """One row of levers: a runner as one sampling run builds it, timed after its first calls
    (warm-up, graph capture) at `points[0]`, then checked again at the other points (replays)."""
    first = points[0]
    _reset_peak(device)
    start = time.perf_counter()
    runner = FlowRunner(model, first.x, cond, neg, options, **kwargs)
    outputs = [(runner.pair(first.x, first.t), runner.positive(first.x, first.t))]
    synchronize(device)
    setup_s = time.perf_counter() - start
    level = {
        "label": label,
        "options": options.__dict__.copy(),
        "first_calls_s": setup_s,
        "pair_ms": _median_ms(lambda: runner.pair(first.x, first.t), device, repeats),
        "forward_ms": _median_ms(lambda: runner.positive(first.x, first.t), device, repeats),
    }
    outputs += [(runner.pair(p.x, p.t), runner.positive(p.x, p.t)) for p in points[1:]]
    level["peak_gib"] = _peak_gib(device)
    errors = []
    for point, ((v_pos, v_neg), positive) in zip(points, outputs, strict=True):
        errors.append(
            {
                "t": float(point.t[0]),
                "positive": rel_l2(positive, point.ref_pos),
                "pair_positive": rel_l2(v_pos, point.ref_pos),
                "pair_negative": rel_l2(v_neg, point.ref_neg),
            }
        )
    level["rel_l2"] = errors
    level["rel_l2_max"] = max(v for e in errors for k, v in e.items() if k != "t")
    report = runner.report
    level["attention_backend"] = report.attention_backend or "pytorch default"
    level["attention_probe"] = report.attention_probe
    level["graphs"] = dict(report.graphs) or "off"
    level["context_cache_mib"] = report.context_cache_mib
    level["null_context"] = report.null_context
    level["compile_error"] = report.compile_error
    level["fp8"] = report.fp8
    runner.close()
    return level


def compare_markdown(info: dict[str, Any], rows: list[dict[str, Any]], quick: bool) -> str:
    lines = [
        f"# Flow models: reference against fast path{' (quick, tiny configs)' if quick else ''}",
        "",
        ", ".join(f"{k}: {v}" for k, v in info.items()),
        "",
        "Per forward (one conditional forward) and per guided step (the CFG pair: two reference "
        "forwards, one batched fast forward); median ms after warm-up; relative L2 of the fast "
        f"outputs against the reference (bound {REL_L2_BOUND:g}).",
        "",
        "| model | input | ref forward ms | fast forward ms | x | ref pair ms | fast pair ms | x | "
        "ref peak GiB | fast peak GiB | attention (fast) | rel L2 | ok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['input']} | {r['error']} |" + " |" * 11)
            continue
        ref = r["reference"]
        fast = next(lv for lv in r["levels"] if lv["label"] == FAST_LABEL)
        ops = ", ".join(op.removeprefix("aten::") for op in fast.get("attention", {}).get("ops", []))
        lines.append(
            f"| {r['name']} | {r['input']} | {ref['forward_ms']:.1f} | {fast['forward_ms']:.1f} | "
            f"{r['speedup_forward']:.2f} | {ref['pair_ms']:.1f} | {fast['pair_ms']:.1f} | {r['speedup_pair']:.2f} | "
            f"{_fmt(ref['peak_gib'], '.2f')} | {_fmt(fast['peak_gib'], '.2f')} | {fast['attention_backend']} ({ops}) | "
            f"{r['rel_l2_max']:.1e} | {'yes' if r['within_bound'] else '**no**'} |"
        )
    lines += ["", "## Levers one at a time", ""]
    for r in rows:
        if "error" in r:
            continue
        ref = r["reference"]
        ref_ops = ", ".join(op.removeprefix("aten::") for op in ref["attention"].get("ops", []))
        lines += [
            f"### {r['name']} ({r['input']})",
            "",
            f"reference: forward {ref['forward_ms']:.1f} ms, pair {ref['pair_ms']:.1f} ms, attention ops: {ref_ops}; "
            f"bf16 reference against float32: rel L2 {_fmt(ref.get('rel_l2_bf16_vs_fp32'), '.1e')}",
            "",
            "| levers | forward ms | pair ms | pair x | first calls s | peak GiB | backend | graphs | rel L2 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
        ]
        for lv in r["levels"]:
            graphs = (
                lv["graphs"]
                if isinstance(lv["graphs"], str)
                else ", ".join(f"{k}: {v}" for k, v in lv["graphs"].items())
            )
            backend = lv["attention_backend"] + (
                f" (compile failed: {lv['compile_error']})" if lv["compile_error"] else ""
            )
            if lv.get("fp8"):
                backend += f"; FP8 {lv['fp8']}"
            lines.append(
                f"| {lv['label']} | {lv['forward_ms']:.1f} | {lv['pair_ms']:.1f} | {ref['pair_ms'] / lv['pair_ms']:.2f} | "
                f"{lv['first_calls_s']:.2f} | {_fmt(lv['peak_gib'], '.2f')} | {backend} | {graphs} | {lv['rel_l2_max']:.1e} |"
            )
        fast = next(lv for lv in r["levels"] if lv["label"] == FAST_LABEL)
        kernels = fast.get("attention", {}).get("kernels", [])
        probe = fast.get("attention_probe")
        if probe:
            timings = ", ".join(f"{k} {v:.2f} ms" for k, v in probe["ms"].items())
            refused = "; ".join(f"{k}: {v}" for k, v in probe["errors"].items())
            lines.append(
                f"\nattention probe ({'; '.join(probe['shapes'])}): {timings or 'none ran'}"
                + (f"; refused: {refused}" if refused else "")
            )
        if kernels:
            lines.append(f"\nattention kernels (fast): {'; '.join(kernels)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_compare(out: Path | None, info: dict[str, Any], rows: list[dict[str, Any]], quick: bool) -> str:
    """The report so far as Markdown, also written (with the JSON) to `out` when given."""
    text = compare_markdown(info, rows, quick)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "hardware": info,
            "quick": quick,
            "mode": "compare-reference",
            "rel_l2_bound": REL_L2_BOUND,
            "results": rows,
        }
        out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str))
        out.with_suffix(".md").write_text(text)
    return text


def run_compare(args: argparse.Namespace, device: torch.device) -> int:
    cases = make_compare_cases(args.quick, device)
    names = [c.name for c in cases]
    wanted = {n.strip() for n in args.only.split(",") if n.strip()} if args.only else set(names)
    compiled = (
        {n.strip() for n in args.compile_only.split(",") if n.strip()} if args.compile_only else set(names)
    )
    unknown = (wanted | (compiled if args.compile and args.compile_only else set())) - set(names)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {names}")
    cases = [c for c in cases if c.name in wanted]
    if args.quick:
        torch.set_num_threads(1)  # tiny models: threads only add noise on a shared CPU
    info = hardware(device)
    print(", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, case in enumerate(cases, 1):
        levels = list(LEVELS)
        if args.compile and case.name in compiled:
            levels.append(COMPILE_LEVEL)
        if args.attention_backend == "auto" and device.type == "cuda":
            levels.append(DEFAULT_BACKEND_LEVEL)  # what the measured backend choice adds, in speed and error
        if args.fp8:
            levels.append(FP8_LEVEL)
        print(f"[{index}/{len(cases)}] {case.name}: {case.describe_input}", flush=True)
        rows.append(compare_case(case, device, args.repeats, levels, args.attention_backend))
        if "error" in rows[-1]:
            print(f"  error: {rows[-1]['error']}", flush=True)
        write_compare(args.out, info, rows, args.quick)  # partial results survive a later failure
        print(f"  ({time.perf_counter() - started:.0f} s so far)", flush=True)
    text = write_compare(args.out, info, rows, args.quick)
    print()
    print(text)
    if args.out:
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 1 if any("error" in r for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny configs and inputs (CPU smoke test)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs after the warm-up (median reported)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated case names (e.g. ss_flow,shape_flow_32768)"
    )
    parser.add_argument("--out", type=Path, help="write results as JSON (and Markdown next to it)")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="also round-trip every model through a checkpoint file here (timed from_pretrained)",
    )
    parser.add_argument(
        "--compare-reference",
        action="store_true",
        help="flows only: reference against fast path, lever by lever (see the module docstring)",
    )
    parser.add_argument(
        "--attention-backend",
        default="auto",
        help="fast path SDPA backend: auto (measured), cudnn, flash, efficient, math or default",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile'd blocks (compiling takes ~1 min)"
    )
    parser.add_argument(
        "--fp8",
        action="store_true",
        help="with --compare-reference: also time the opt-in FP8 matrix products and report their drift",
    )
    parser.add_argument(
        "--compile-only",
        default="",
        help="with --compile: comma-separated cases that get the compile level (default: all)",
    )
    args = parser.parse_args(argv)
    if args.attention_backend == "default":
        args.attention_backend = None

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine; use --device cpu")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.compare_reference:
        return run_compare(args, device)
    if args.checkpoint_dir:
        args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    cases = make_cases(args.quick, device)
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {c.name for c in cases}
        if unknown:
            parser.error(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]

    info = hardware(device)
    print(", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    results, state = [], {}
    for case in cases:
        r = run_case(case, device, args.repeats, state, args.checkpoint_dir)
        results.append(r)
        status = r.error or f"{_fmt(r.seconds, '.3f')} s, peak {_fmt(r.peak_gib, '.2f')} GiB"
        print(f"{r.name:<16} {r.params:>15,}  {status}  [{r.input}]", flush=True)
    print()
    print(markdown(info, results, args.quick))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"hardware": info, "quick": args.quick, "results": [r.__dict__ for r in results]}
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
        args.out.with_suffix(".md").write_text(markdown(info, results, args.quick))
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
