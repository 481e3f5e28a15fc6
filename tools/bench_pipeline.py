"""Benchmark the TRELLIS.2 pipeline: seconds per stage and peak GPU memory, low-VRAM execution.

    python tools/bench_pipeline.py --device cuda [--types 512 1024_cascade] [--hr-tokens 10000 17000] [--out r.json]
    python tools/bench_pipeline.py --device cpu --quick      # tiny models, a few seconds (smoke test)

Real-size networks (configs of spec §1.4, DINOv3 ViT-L/16) get random weights in their runtime dtypes
(bf16 flows, fp16 decoders) and live on the CPU; every stage moves its network to the device and back,
exactly as `run` does. Random networks do not produce a realistic sparse structure, so the occupied
voxels are replaced by those of a real mesh (a mug: body, inner wall, handle) voxelised at 32^3 (and
at 64^3 for the cascade's high-resolution stage, scaled to the requested token counts); all network
work of every stage still runs (sparse-structure flow + decoder, shape-decoder upsampling, ...).

    python tools/bench_pipeline.py --compare-reference --out docs/benchmarks/pipeline-compare-h200.json
    python tools/bench_pipeline.py --compare-reference --device cpu --quick   # smoke test

`--compare-reference` runs every case with the reference path and then with the fast path
(`trellis2.samplers.fast_path`), same process, same device, same seed: seconds and peak memory per
stage, the ratio, the attention backend and CUDA graphs each stage used, and the relative L2 of
each stage's final latent, fast against reference. The texture stage of the fast run starts from
the reference run's shape latent (teacher forcing), so every stage is compared on equal inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bench_report import save_report  # noqa: E402
from make_tiny_models import calibration_image, make_tiny_models, pipeline_json  # noqa: E402

from trellis2.modules.sparse import SparseTensor  # noqa: E402
from trellis2.pipelines.pipeline_config import PipelineConfig  # noqa: E402
from trellis2.pipelines.trellis2_image_to_3d import Trellis2ImageTo3DPipeline  # noqa: E402
from trellis2.samplers import FastPathOptions  # noqa: E402

REL_L2_BOUND = 2e-3  # fast against reference on every stage's final latent (bf16 flows)

FLOW = {
    "model_channels": 1536,
    "cond_channels": 1024,
    "num_blocks": 30,
    "num_heads": 12,
    "mlp_ratio": 5.3334,
    "pe_mode": "rope",
    "share_mod": True,
    "initialization": "scaled",
    "qk_rms_norm": True,
    "qk_rms_norm_cross": True,
    "dtype": "bfloat16",
}
DECODER = {
    "model_channels": [1024, 512, 256, 128, 64],
    "latent_channels": 32,
    "num_blocks": [4, 16, 8, 4, 0],
    "block_type": ["SparseConvNeXtBlock3d"] * 5,
    "up_block_type": ["SparseResBlockC2S3d"] * 4,
    "block_args": [{"use_checkpoint": False}] * 5,
    "use_fp16": True,
}
REAL_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "sparse_structure_flow_model": (
        "SparseStructureFlowModel",
        {"resolution": 16, "in_channels": 8, "out_channels": 8, **FLOW},
    ),
    "sparse_structure_decoder": (
        "SparseStructureDecoder",
        {
            "out_channels": 1,
            "latent_channels": 8,
            "num_res_blocks": 2,
            "num_res_blocks_middle": 2,
            "channels": [512, 128, 32],
            "use_fp16": True,
        },
    ),
    "shape_slat_flow_model_512": (
        "SLatFlowModel",
        {"resolution": 32, "in_channels": 32, "out_channels": 32, **FLOW},
    ),
    "shape_slat_flow_model_1024": (
        "SLatFlowModel",
        {"resolution": 64, "in_channels": 32, "out_channels": 32, **FLOW},
    ),
    "tex_slat_flow_model_512": (
        "SLatFlowModel",
        {"resolution": 32, "in_channels": 64, "out_channels": 32, **FLOW},
    ),
    "tex_slat_flow_model_1024": (
        "SLatFlowModel",
        {"resolution": 64, "in_channels": 64, "out_channels": 32, **FLOW},
    ),
    "shape_slat_decoder": ("FlexiDualGridVaeDecoder", {"resolution": 256, **DECODER}),
    "tex_slat_decoder": ("SparseUnetVaeDecoder", {"out_channels": 6, **DECODER, "pred_subdiv": False}),
}
REAL_SAMPLERS = {
    "sparse_structure_sampler": (12, 7.5, 0.7, [0.6, 1.0], 5.0),
    "shape_slat_sampler": (12, 7.5, 0.5, [0.6, 1.0], 3.0),
    "tex_slat_sampler": (12, 1.0, 0.0, [0.6, 0.9], 3.0),
}


# --- a realistic sparse structure -------------------------------------------------------------
def mug_mesh() -> trimesh.Trimesh:
    """A mug-like mesh (outer wall, inner wall, bottom, handle) centred in the unit cube."""
    outer = trimesh.creation.cylinder(radius=0.30, height=0.70, sections=96)
    inner = trimesh.creation.cylinder(radius=0.26, height=0.64, sections=96)
    inner.apply_translation([0, 0, 0.04])
    handle = trimesh.creation.torus(
        major_radius=0.16, minor_radius=0.04, major_sections=64, minor_sections=24
    )
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    handle.apply_translation([0.36, 0, 0])
    mesh = trimesh.util.concatenate([outer, inner, handle])
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(0.95 / mesh.extents.max())
    return mesh


def surface_voxels(mesh: trimesh.Trimesh, grid: int, scale: float = 1.0) -> torch.Tensor:
    """Voxels `[N, 4]` int32 `(0, x, y, z)` touched by the (scaled) surface, lexicographic."""
    points, _ = trimesh.sample.sample_surface(mesh, 60 * grid * grid, seed=0)
    cells = np.floor((points * scale + 0.5) * grid).astype(np.int64).clip(0, grid - 1)
    cells = np.unique(cells, axis=0)
    coords = np.concatenate([np.zeros((len(cells), 1), np.int64), cells], axis=1)
    return torch.from_numpy(coords).int()


def scale_for_tokens(mesh: trimesh.Trimesh, grid: int, tokens: int) -> float:
    """Uniform scale (<= 1) at which the mesh's surface covers about `tokens` voxels of `grid`^3."""
    full = surface_voxels(mesh, grid).shape[0]
    scale = min(1.0, (tokens / full) ** 0.5)
    for _ in range(3):
        scale = min(1.0, scale * (tokens / surface_voxels(mesh, grid, scale).shape[0]) ** 0.5)
    return scale


class BenchPipeline(Trellis2ImageTo3DPipeline):
    """Runs every network as `run` does but uses a given structure for the latent voxels."""

    lr_coords: torch.Tensor
    hr_coords: torch.Tensor | None = None
    record: dict[str, Any] | None = None  # when a dict: every stage's final latent (and the texture input)
    teacher: dict[str, Any] | None = None  # a recorded run whose texture input replaces this run's

    def _sample(
        self,
        sampler_key: str,
        model: torch.nn.Module,
        noise: Any,
        cond: Any,
        params: dict[str, Any],
        stage: str,
        progress: Any,
        cancel: Any,
        **kwargs: Any,
    ) -> Any:
        samples = super()._sample(sampler_key, model, noise, cond, params, stage, progress, cancel, **kwargs)
        if self.record is not None:
            self.record[stage] = samples
        return samples

    def sample_tex_slat(
        self, cond: Any, flow_key: str, shape_slat: SparseTensor, *args: Any, **kwargs: Any
    ) -> Any:
        if self.teacher is not None and "tex_input" in self.teacher:
            shape_slat = self.teacher["tex_input"]
        if self.record is not None:
            self.record["tex_input"] = shape_slat
        return super().sample_tex_slat(cond, flow_key, shape_slat, *args, **kwargs)

    def sample_sparse_structure(self, cond, resolution, generator, params, progress, cancel, num_samples=1):
        try:
            super().sample_sparse_structure(
                cond, resolution, generator, params, progress, cancel, num_samples
            )
        except RuntimeError as exc:  # random weights may decode an empty structure; the work was still done
            if "no occupied voxels" not in str(exc):
                raise
        return self.lr_coords

    def sample_shape_slat(self, cond, flow_key, coords, *args, **kwargs):
        if flow_key == "shape_slat_flow_model_1024" and self.hr_coords is not None:
            coords = self.hr_coords
        return super().sample_shape_slat(cond, flow_key, coords, *args, **kwargs)


# --- random real-size networks ----------------------------------------------------------------
@torch.no_grad()
def random_model(name: str, args: dict[str, Any], init_device: torch.device) -> torch.nn.Module:
    """Build on `meta`, materialise on `init_device`, fill with random values, park on the CPU."""
    from trellis2.models import model_class

    with torch.device("meta"):
        model = model_class(name)(**args)
    model = model.to_empty(device=init_device)
    for name_, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        leaf = name_.rsplit(".", 1)[-1]
        if leaf == "weight" and tensor.dim() >= 2:
            tensor.normal_(0.0, tensor[0].numel() ** -0.5)
        elif leaf in ("weight", "gamma"):
            tensor.fill_(1.0)
        else:
            tensor.normal_(0.0, 0.1)
    for module in model.modules():
        if hasattr(module, "reset_derived_buffers"):
            module.reset_derived_buffers()
    model.requires_grad_(False)
    return model.to("cpu").eval()


REAL_DINO = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_register_tokens": 4,
    "patch_size": 16,
    "rope_theta": 100.0,
    "layer_norm_eps": 1e-5,
}


def random_dinov3(init_device: torch.device, dino: dict[str, Any]) -> torch.nn.Module:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from trellis2.modules.image_feature_extractor import DinoV3FeatureExtractor

    config = DINOv3ViTConfig(**dino)
    with init_device:
        model = DINOv3ViTModel(config)
    return DinoV3FeatureExtractor(None, model=model.to("cpu"))


def real_pipeline(
    device: torch.device,
    models: dict[str, tuple[str, dict[str, Any]]] = REAL_MODELS,
    dino: dict[str, Any] = REAL_DINO,
    latent_channels: int = 32,
) -> BenchPipeline:
    """Random networks (real sizes by default) in a pipeline; `models`/`dino` allow a dry run."""
    raw = pipeline_json()
    for key, (steps, strength, rescale, interval, rescale_t) in REAL_SAMPLERS.items():
        raw["args"][key]["params"] = {
            "steps": steps,
            "guidance_strength": strength,
            "guidance_rescale": rescale,
            "guidance_interval": interval,
            "rescale_t": rescale_t,
        }
    for key in ("shape_slat_normalization", "tex_slat_normalization"):
        raw["args"][key] = {"mean": [0.0] * latent_channels, "std": [1.0] * latent_channels}
    pipe = BenchPipeline(PipelineConfig.parse(raw), REPO_ROOT, None, device)
    init_device = device if device.type == "cuda" else torch.device("cpu")
    for key, (name, args) in models.items():
        print(f"building {key} ({name}) ...", flush=True)
        pipe.models.add(key, random_model(name, args, init_device))
    pipe.models.add("image_cond_model", random_dinov3(init_device, dino))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return pipe


# --- measurement ------------------------------------------------------------------------------
class StageClock:
    """Progress callback that records seconds and peak device memory per stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = self.last = time.perf_counter()
        self.rows: dict[str, dict[str, float]] = {}

    def _peak_gb(self) -> float:
        if self.device.type != "cuda":
            return 0.0
        return torch.cuda.max_memory_allocated(self.device) / 2**30

    def __call__(self, stage: str, step: int, total: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        row = self.rows.setdefault(stage, {"seconds": 0.0, "peak_gb": 0.0, "steps": total})
        row["seconds"] += now - self.last
        row["peak_gb"] = max(row["peak_gb"], self._peak_gb())
        if self.device.type == "cuda":  # each interval's peak belongs to the stage that reported it
            torch.cuda.reset_peak_memory_stats(self.device)
        self.last = time.perf_counter()


def bench_case(pipe: BenchPipeline, pipeline_type: str, image, device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    clock = StageClock(device)
    assets = pipe.run(image, seed=0, pipeline_type=pipeline_type, progress=clock)
    total = time.perf_counter() - clock.start
    overall_peak = max((r["peak_gb"] for r in clock.rows.values()), default=0.0)
    asset = assets[0]
    return {
        "pipeline_type": pipeline_type,
        "lr_tokens": int(pipe.lr_coords.shape[0]),
        "hr_tokens": int(pipe.hr_coords.shape[0])
        if pipe.hr_coords is not None and "cascade" in pipeline_type
        else None,
        "decoded_voxels": int(asset.coords.shape[0]),
        "faces": int(asset.faces.shape[0]),
        "stages": clock.rows,
        "total_seconds": total,
        "generation_seconds": total - clock.rows.get("decode", {}).get("seconds", 0.0),
        "peak_gb": overall_peak,
        "params_on_device_after_run": pipe.parameters_on_device(),
    }


def hardware(device: torch.device) -> dict[str, str]:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# bench_pipeline ({'quick' if report['quick'] else 'real-size'})",
        "",
        "hardware: " + ", ".join(f"{k} {v}" for k, v in report["hardware"].items()),
        "",
    ]
    for case in report["cases"]:
        lines.append(
            f"## {case['pipeline_type']} - LR tokens {case['lr_tokens']}, HR tokens {case['hr_tokens']}, "
            f"decoded voxels {case['decoded_voxels']}, faces {case['faces']}"
        )
        lines += ["", "| stage | steps | seconds | peak GB |", "| --- | ---: | ---: | ---: |"]
        for stage, row in case["stages"].items():
            lines.append(f"| {stage} | {row['steps']} | {row['seconds']:.2f} | {row['peak_gb']:.2f} |")
        lines.append(f"| **generation (without decode)** | | {case['generation_seconds']:.2f} | |")
        lines.append(f"| **total** | | {case['total_seconds']:.2f} | {case['peak_gb']:.2f} |")
        lines.append(
            f"\nparameters left on the device after run: {case['params_on_device_after_run'] or 'none'}\n"
        )
    return "\n".join(lines)


# --- reference against fast path (--compare-reference) -------------------------------------------
def rel_l2(a: Any, b: Any) -> float:
    """`||a - b|| / ||b||` of two latents (dense tensors or sparse features)."""
    fa = (a.feats if isinstance(a, SparseTensor) else a).float()
    fb = (b.feats if isinstance(b, SparseTensor) else b).float()
    return float((fa - fb).norm() / fb.norm().clamp_min(1e-30))


def run_mode(
    pipe: BenchPipeline,
    pipeline_type: str,
    image: Any,
    device: torch.device,
    fast: Any,
    runs: int,
    teacher: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`runs` runs with `pipe.fast = fast` (the last one reported and recorded) -> (case, latents)."""
    pipe.fast, pipe.teacher = fast, teacher
    earlier = []
    for _ in range(runs - 1):
        pipe.record = None
        earlier.append(bench_case(pipe, pipeline_type, image, device)["total_seconds"])
    pipe.record, pipe.fast_path_reports = {}, {}
    case = bench_case(pipe, pipeline_type, image, device)
    case["earlier_runs_total_seconds"] = earlier
    case["fast_path"] = {stage: report.as_dict() for stage, report in pipe.fast_path_reports.items()}
    latents = pipe.record
    pipe.record = pipe.teacher = None
    return case, latents


def compare_stages(
    ref: dict[str, Any], fast: dict[str, Any], ref_latents: dict[str, Any], fast_latents: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per stage: seconds, peaks, what the fast path did and the final latents' rel L2."""
    rows = []
    for stage, ref_row in ref["stages"].items():
        fast_row = fast["stages"].get(stage, {})
        report = fast["fast_path"].get(stage)
        row = {
            "stage": stage,
            "steps": ref_row["steps"],
            "reference_seconds": ref_row["seconds"],
            "fast_seconds": fast_row.get("seconds"),
            "speedup": ref_row["seconds"] / fast_row["seconds"] if fast_row.get("seconds") else None,
            "reference_peak_gb": ref_row["peak_gb"],
            "fast_peak_gb": fast_row.get("peak_gb"),
        }
        if report is not None:
            row["fast_path_used"] = report["used"]
            row["fast_path_reason"] = report["reason"]
            row["attention_backend"] = report["attention_backend"] or "pytorch default"
            row["graphs"] = report["graphs"]
            row["calls"] = report["calls"]
            row["null_context"] = report["null_context"]
            row["pair_probe"] = report.get("pair_probe")
        if stage in ref_latents and stage in fast_latents:
            row["rel_l2"] = rel_l2(fast_latents[stage], ref_latents[stage])
            row["within_bound"] = row["rel_l2"] <= REL_L2_BOUND
        rows.append(row)
    return rows


def stage_table(ref: dict[str, Any], fast: dict[str, Any], stages: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per stage, then generation and total."""
    lines = [
        "| stage | steps | ref s | fast s | x | ref peak GB | fast peak GB | attention | graphs | rel L2 | ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for row in stages:
        graphs = ", ".join(f"{k}: {v}" for k, v in (row.get("graphs") or {}).items()) or "-"
        attention = row.get("attention_backend", "-")
        if row.get("fast_path_used") is False:
            attention = f"reference ({row['fast_path_reason']})"
        rel = f"{row['rel_l2']:.1e}" if "rel_l2" in row else "-"
        ok = "-" if "within_bound" not in row else ("yes" if row["within_bound"] else "**no**")
        speedup = f"{row['speedup']:.2f}" if row["speedup"] else "-"
        lines.append(
            f"| {row['stage']} | {row['steps']} | {row['reference_seconds']:.2f} | {row['fast_seconds'] or 0:.2f} | "
            f"{speedup} | {row['reference_peak_gb']:.2f} | {row['fast_peak_gb'] or 0:.2f} | {attention} | {graphs} | "
            f"{rel} | {ok} |"
        )
    lines.append(
        f"| **generation (without decode)** | | {ref['generation_seconds']:.2f} | {fast['generation_seconds']:.2f} | "
        f"{ref['generation_seconds'] / fast['generation_seconds']:.2f} | | | | | | |"
    )
    lines.append(
        f"| **total** | | {ref['total_seconds']:.2f} | {fast['total_seconds']:.2f} | "
        f"{ref['total_seconds'] / fast['total_seconds']:.2f} | {ref['peak_gb']:.2f} | {fast['peak_gb']:.2f} | | | | |"
    )
    return lines


def compare_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# bench_pipeline --compare-reference ({'quick' if report['quick'] else 'real-size'})",
        "",
        "hardware: " + ", ".join(f"{k} {v}" for k, v in report["hardware"].items()),
        "",
        "Seconds per stage (warm run), reference path against fast path, same process and seed; relative "
        f"L2 of each stage's final latent, fast against reference (bound {REL_L2_BOUND:g}; the texture "
        "stage of the fast run starts from the reference shape latent).",
        "",
    ]
    for case in report["cases"]:
        ref = case["reference"]
        lines.append(
            f"## {case['pipeline_type']} - LR tokens {ref['lr_tokens']}, HR tokens {ref['hr_tokens']}, "
            f"decoded voxels {ref['decoded_voxels']}"
        )
        variants = [("fast path", case["fast"], case["stages"])]
        if "fast_default_attention" in case:
            variants.append(
                (
                    "fast path with PyTorch's own SDPA choice",
                    case["fast_default_attention"],
                    case["stages_default_attention"],
                )
            )
        for title, fast, stages in variants:
            lines += ["", f"### reference against {title}", "", *stage_table(ref, fast, stages)]
            fp8 = {stage: r.get("fp8") for stage, r in fast["fast_path"].items() if r.get("fp8")}
            if fp8:  # the opt-in FP8 products: their rel L2 is their drift, not held to the bound
                lines += ["", "FP8 matrix products: " + "; ".join(f"{k}: {v}" for k, v in fp8.items())]
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path | None, report: dict[str, Any]) -> str:
    """The report as Markdown, also written (with the JSON) to `out` when given."""
    text = compare_markdown(report) if report.get("mode") == "compare-reference" else markdown(report)
    save_report(out, report, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and structures (CPU smoke test)")
    parser.add_argument("--types", nargs="+", default=["512", "1024_cascade"])
    parser.add_argument(
        "--hr-tokens",
        nargs="+",
        type=int,
        default=[10000, 17000],
        help="high-resolution token counts for the cascade types",
    )
    parser.add_argument("--runs", type=int, default=2, help="runs per case; the last one is reported (warm)")
    parser.add_argument("--out", type=Path, help="write the report as JSON (and Markdown next to it)")
    parser.add_argument(
        "--compare-reference",
        action="store_true",
        help="run every case with the reference path, then the fast path, and compare them",
    )
    parser.add_argument(
        "--attention-backend",
        default="auto",
        help="fast path SDPA backend: auto (measured), cudnn, flash, efficient, math or default",
    )
    parser.add_argument("--compile", action="store_true", help="fast path with torch.compile'd blocks")
    levers = [f.name for f in dataclasses.fields(FastPathOptions) if f.type in (bool, "bool")]
    parser.add_argument(
        "--without",
        nargs="+",
        default=[],
        choices=levers,
        help="fast path levers to switch off (one lever's effect)",
    )
    parser.add_argument(
        "--with",
        dest="with_levers",
        nargs="+",
        default=[],
        choices=levers,
        help="fast path levers to switch on (those off by default, e.g. fused_qk)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine; use --device cpu")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    fast_options = FastPathOptions(
        attention_backend=None if args.attention_backend == "default" else args.attention_backend,
        compile=args.compile,
        **dict.fromkeys(args.without, False),
        **dict.fromkeys(args.with_levers, True),
    )

    image = calibration_image(opaque=False)
    mesh = mug_mesh()
    if args.quick:
        torch.set_num_threads(1)
        folder = make_tiny_models(Path(tempfile.mkdtemp(prefix="tiny_models_")))
        pipe = BenchPipeline.from_pretrained(folder, device=device)
        hr_targets = [120]
    else:
        pipe = real_pipeline(device)
        hr_targets = args.hr_tokens

    report: dict[str, Any] = {"quick": args.quick, "hardware": hardware(device), "cases": []}
    if args.compare_reference:
        report["mode"] = "compare-reference"
        report["rel_l2_bound"] = REL_L2_BOUND
        report["fast_options"] = fast_options.__dict__.copy()
    started = time.perf_counter()
    for pipeline_type in args.types:
        cascade = "cascade" in pipeline_type
        for target in hr_targets if cascade else hr_targets[:1]:
            # One object size per case: its surface at 64^3 has ~target voxels, at 32^3 about a quarter.
            scale = scale_for_tokens(mesh, 64, target)
            pipe.lr_coords = surface_voxels(mesh, 32, scale).to(device)
            pipe.hr_coords = surface_voxels(mesh, 64, scale).to(device) if cascade else None
            print(
                f"running {pipeline_type} with {pipe.lr_coords.shape[0]} LR tokens"
                + (f" and {pipe.hr_coords.shape[0]} HR tokens" if cascade else ""),
                flush=True,
            )
            if args.compare_reference:
                ref, ref_latents = run_mode(pipe, pipeline_type, image, device, False, args.runs, None)
                print(
                    f"  reference: {ref['total_seconds']:.2f} s ({time.perf_counter() - started:.0f} s so far)"
                )
                fast, fast_latents = run_mode(
                    pipe, pipeline_type, image, device, fast_options, args.runs, ref_latents
                )
                print(
                    f"  fast:      {fast['total_seconds']:.2f} s ({time.perf_counter() - started:.0f} s so far)"
                )
                case = {
                    "pipeline_type": pipeline_type,
                    "reference": ref,
                    "fast": fast,
                    "stages": compare_stages(ref, fast, ref_latents, fast_latents),
                }
                if fast_options.attention_backend == "auto" and (device.type == "cuda" or args.quick):
                    # The same fast path with PyTorch's own SDPA choice (the reference's kernel): what
                    # the measured backend adds in speed and in difference. One warm run suffices.
                    # (On the CPU `auto` is PyTorch's choice already; --quick runs it as a smoke test.)
                    default = dataclasses.replace(fast_options, attention_backend=None)
                    other, other_latents = run_mode(
                        pipe, pipeline_type, image, device, default, 1, ref_latents
                    )
                    print(f"  fast, PyTorch's SDPA choice: {other['total_seconds']:.2f} s", flush=True)
                    case["fast_default_attention"] = other
                    case["stages_default_attention"] = compare_stages(ref, other, ref_latents, other_latents)
                for row in case["stages"]:
                    if "rel_l2" in row:
                        print(
                            f"  {row['stage']:<18} {row['reference_seconds']:.2f} s -> {row['fast_seconds']:.2f} s, "
                            f"rel L2 {row['rel_l2']:.1e}, attention {row.get('attention_backend')}",
                            flush=True,
                        )
                report["cases"].append(case)
                write_report(args.out, report)  # partial results survive a later failure
                continue
            cold = [
                bench_case(pipe, pipeline_type, image, device)["total_seconds"] for _ in range(args.runs - 1)
            ]
            case = bench_case(pipe, pipeline_type, image, device)
            case["earlier_runs_total_seconds"] = cold
            report["cases"].append(case)
            print(json.dumps(case, indent=1), flush=True)
    print(write_report(args.out, report))
    if args.out:
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
