"""Benchmark draft to final: a Fast (Fresnel) draft and its Refine against a plain TRELLIS.2 run of the same type.

    python -m tools.bench_refine --device cuda --out docs/benchmarks/refine-h200.json
    python -m tools.bench_refine --device cpu --quick      # tiny models (smoke test)

The draft is the bundled Fresnel on a procedural RGBA render, timed from image to draft GLB (`run_draft`, then
the export at the Fast tab's defaults, as `tools/bench_fresnel.py` does). Its sparse structure then feeds
both TRELLIS.2 runs (`tools/bench_pipeline.py`'s pipeline: real-size networks with random weights, low-VRAM):
the plain run samples a sparse structure of its own (flow and decoder, all their work) and is then given
the draft's voxels, so that both runs carry the same tokens through the later stages; the refine run takes
the draft's structure in place of that stage (`run(structure=...)`), as a Refine job does. Seconds per stage
(warm: the last of `--runs`), peak GPU memory, and what the artist's two steps cost against one plain run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fresnel.pipeline import FresnelPipeline  # noqa: E402
from tools.bench_fresnel import export_glb, procedural_image  # noqa: E402
from tools.bench_models import synchronize  # noqa: E402
from tools.bench_pipeline import BenchPipeline, StageClock, hardware, real_pipeline  # noqa: E402
from tools.bench_report import hardware_phrase, save_report  # noqa: E402
from tools.make_tiny_models import make_tiny_models  # noqa: E402
from trellis2.pipelines.sampling_stages import structure_coords  # noqa: E402

STRUCTURE_STAGE = "sparse_structure"


def time_draft(
    fresnel: FresnelPipeline, image: Image.Image, runs: int
) -> tuple[dict[str, float], torch.Tensor]:
    """`(seconds, structure)`: the warm draft, image to structure and image to GLB bytes."""
    for _ in range(runs):
        synchronize(fresnel.device)
        start = time.perf_counter()
        assets, structure = fresnel.run_draft(image, seed=0)
        synchronize(fresnel.device)
        drafted = time.perf_counter()
        export_glb(assets[0])
        done = time.perf_counter()
    return {"structure_seconds": drafted - start, "glb_seconds": done - start}, structure


def time_trellis(
    pipe: BenchPipeline, image: Image.Image, pipeline_type: str, structure: torch.Tensor | None, runs: int
) -> dict[str, Any]:
    """Seconds and peak memory per stage of the last of `runs` runs (plain when `structure` is None)."""
    device = pipe.device
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        clock = StageClock(device)
        pipe.run(image, seed=0, pipeline_type=pipeline_type, progress=clock, structure=structure)
        synchronize(device)
        total = time.perf_counter() - clock.start
    return {
        "stages": clock.rows,
        "total_seconds": total,
        "peak_gb": max((r["peak_gb"] for r in clock.rows.values()), default=0.0),
    }


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    device = torch.device(args.device)
    image = Image.open(procedural_image(work / "input.png", seed=args.seed, device="cpu"))
    fresnel = FresnelPipeline.from_checkpoint(device=device)
    draft, structure = time_draft(fresnel, image, args.runs)
    del fresnel
    if args.quick:
        pipe = BenchPipeline.from_pretrained(make_tiny_models(work / "models"), device=device)
    else:
        pipe = real_pipeline(device)
    cases = []
    for pipeline_type in args.types:
        pipe.lr_coords = structure_coords(structure[None, None].to(device), 32)
        pipe.hr_coords = (
            structure_coords(structure[None, None].to(device), 64) if "cascade" in pipeline_type else None
        )
        print(f"{pipeline_type}: {pipe.lr_coords.shape[0]} structure voxels at 32^3", flush=True)
        plain = time_trellis(pipe, image, pipeline_type, None, args.runs)
        refine = time_trellis(pipe, image, pipeline_type, structure, args.runs)
        cases.append(
            {
                "pipeline_type": pipeline_type,
                "lr_tokens": int(pipe.lr_coords.shape[0]),
                "hr_tokens": None if pipe.hr_coords is None else int(pipe.hr_coords.shape[0]),
                "plain": plain,
                "refine": refine,
                "saved_seconds": plain["total_seconds"] - refine["total_seconds"],
                "structure_stage_seconds": plain["stages"][STRUCTURE_STAGE]["seconds"],
                "draft_and_refine_seconds": draft["glb_seconds"] + refine["total_seconds"],
            }
        )
        print(json.dumps({k: v for k, v in cases[-1].items() if k not in ("plain", "refine")}), flush=True)
    return {
        "quick": args.quick,
        "hardware": hardware(device),
        "structure_voxels_64": int(structure.sum()),
        "draft": draft,
        "cases": cases,
    }


def markdown(report: dict[str, Any]) -> str:
    hw = report["hardware"]
    draft = report["draft"]
    lines = [
        "# Draft + Refine against a plain TRELLIS.2 run"
        + (" (quick: tiny models)" if report["quick"] else ""),
        "",
        f"Hardware: {hardware_phrase(hw)}"
        + ". TRELLIS.2: "
        + ("tiny models" if report["quick"] else "real-size networks with random weights")
        + ", low-VRAM; both runs carry the draft's voxels "
        + f"({report['structure_voxels_64']:,} at 64^3). Fresnel draft: {draft['structure_seconds']:.2f} s to its "
        + f"structure, {draft['glb_seconds']:.2f} s to its GLB.",
        "",
        "| type | tokens (32^3 / 64^3) | plain run | its sparse-structure stage | refine run | saved | draft + refine |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in report["cases"]:
        tokens = f"{case['lr_tokens']:,}" + (f" / {case['hr_tokens']:,}" if case["hr_tokens"] else "")
        lines.append(
            f"| {case['pipeline_type']} | {tokens} | {case['plain']['total_seconds']:.2f} s | "
            f"{case['structure_stage_seconds']:.2f} s | {case['refine']['total_seconds']:.2f} s | "
            f"{case['saved_seconds']:.2f} s | {case['draft_and_refine_seconds']:.2f} s |"
        )
    lines += [
        "",
        "Refine skips the sparse-structure stage; the draft itself (the artist's Fast job) costs its GLB time. "
        "Peak GPU memory, plain / refine: "
        + ", ".join(
            f"{c['pipeline_type']} {c['plain']['peak_gb']:.2f} / {c['refine']['peak_gb']:.2f} GiB"
            for c in report["cases"]
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny TRELLIS.2 models (smoke test)")
    parser.add_argument("--types", nargs="+", default=["512", "1024_cascade"])
    parser.add_argument("--runs", type=int, default=2, help="runs per case; the last one is reported (warm)")
    parser.add_argument("--seed", type=int, default=0, help="the procedural input's seed")
    parser.add_argument("--out", type=Path, help="write the report as JSON (and Markdown next to it)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench_refine_") as tmp:
        report = measure(args, Path(tmp))
    text = markdown(report)
    print(text)
    save_report(args.out, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
