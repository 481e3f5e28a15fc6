"""Benchmark Fresnel from image to GLB bytes at draft export settings, stage by stage.

    python -m tools.bench_fresnel                                  # a procedural render, bundled weights
    python -m tools.bench_fresnel --image photo.png --runs 10 --out docs/benchmarks/fresnel-h200.json

Stages: `preprocess` (image checks, background, object crop), `network` (one forward pass), `surface`
(stand upright, O-Voxel mesh) — all inside `FresnelPipeline.run`, timed through its progress callback — and
`export` (`o_voxel.postprocess.to_glb` as the server calls it, then the GLB bytes). One warm-up run, then
`--runs` timed runs; the medians are reported, with peak GPU memory (`torch.cuda.max_memory_allocated`) on
CUDA. `--out X.json` also writes `X.md`. The default input is a procedural object rendered from an
evaluation camera and saved as an RGBA PNG next to the results (or in a temporary folder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from fresnel.checkpoint import BUNDLED_DIR
from fresnel.data.render import EVAL_CAMERAS, render, sample_cameras
from fresnel.data.scenes import EVAL_RULES, sample_scenes
from fresnel.pipeline import STAGES, FresnelPipeline
from gui.backend.export import to_trimesh
from gui.backend.params import FastParams
from o_voxel.asset import MeshWithVoxel
from tools.bench_report import save_report
from tools.eval_fresnel import hardware

DRAFT = FastParams()  # the Fast tab's export defaults, as the server applies them
IMAGE_RESOLUTION = 512
BENCH_STAGES = (*STAGES, "export")


def procedural_image(
    path: Path, seed: int = 0, resolution: int = IMAGE_RESOLUTION, device: torch.device | str = "cpu"
) -> Path:
    """Render one held-out procedural object and save it as an RGBA PNG (straight alpha)."""
    generator = torch.Generator(device).manual_seed(seed)
    scenes = sample_scenes(1, generator, EVAL_RULES, device)
    cameras = sample_cameras(1, generator, EVAL_CAMERAS, device)
    cameras.distance = cameras.distance * 1.3  # keep the whole object in view
    rgba = render(scenes, cameras, resolution, generator)[0].permute(1, 2, 0).clamp(0, 1)
    Image.fromarray((rgba * 255).round().byte().cpu().numpy(), "RGBA").save(path)
    return path


def export_glb(asset: MeshWithVoxel) -> bytes:
    """The draft GLB of one asset, converted exactly as the server's export does."""
    return to_trimesh(asset, DRAFT).export(file_type="glb")


def timed_run(pipeline: FresnelPipeline, image: Image.Image) -> dict:
    """One image -> GLB bytes: seconds per stage, total, GLB size, faces and peak GPU memory."""
    cuda = pipeline.device.type == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize(pipeline.device)
        return time.perf_counter()

    if cuda:
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    marks: list[tuple[int, float]] = []
    start = now()
    asset = pipeline.run(image, progress=lambda _stage, step, _total: marks.append((step, now())))[0]
    surface_done = now()
    glb = export_glb(asset)
    end = now()
    at = dict(marks)  # step i begins stage i; step len(STAGES) is the end of the last
    bounds = [start, at[1], at[2], at.get(3, surface_done)]
    seconds = {name: bounds[i + 1] - bounds[i] for i, name in enumerate(STAGES)}
    seconds["export"] = end - bounds[3]
    return {
        "seconds": seconds,
        "total_s": end - start,
        "glb_bytes": len(glb),
        "mesh_faces": int(asset.faces.shape[0]),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(pipeline.device) if cuda else None,
    }


def benchmark(pipeline: FresnelPipeline, image: Image.Image, runs: int) -> dict:
    """A warm-up run, then `runs` timed runs: every run and the medians."""
    timed_run(pipeline, image)
    results = [timed_run(pipeline, image) for _ in range(runs)]
    median = {name: statistics.median(r["seconds"][name] for r in results) for name in BENCH_STAGES}
    peaks = [r["peak_gpu_bytes"] for r in results if r["peak_gpu_bytes"] is not None]
    return {
        "median_seconds": median,
        "median_total_s": statistics.median(r["total_s"] for r in results),
        "peak_gpu_bytes": max(peaks) if peaks else None,
        "glb_bytes": results[-1]["glb_bytes"],
        "mesh_faces": results[-1]["mesh_faces"],
        "runs": results,
    }


def markdown(report: dict) -> str:
    """The result as a small Markdown table."""
    peak = report["peak_gpu_bytes"]
    lines = [
        f"Fresnel image → GLB (draft export: decimation {DRAFT.decimation_target}, texture "
        f"{DRAFT.texture_size}, remesh {DRAFT.remesh}); {report['hardware']}; median of {report['runs_timed']} runs after a warm-up.",
        "",
        "| Stage | Median (ms) |",
        "| --- | --- |",
        *(f"| {name} | {report['median_seconds'][name] * 1000:.1f} |" for name in BENCH_STAGES),
        f"| **total** | **{report['median_total_s'] * 1000:.1f}** |",
        "",
        f"Input {report['image']} ({report['image_size'][0]}×{report['image_size'][1]}); raw mesh "
        f"{report['mesh_faces']} faces; GLB {report['glb_bytes'] / 1e6:.2f} MB"
        + (f"; peak GPU memory {peak / 2**20:.0f} MiB." if peak is not None else "."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--image", type=Path, help="an input image (default: a procedural render)")
    parser.add_argument("--seed", type=int, default=0, help="the procedural object's seed")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="write JSON here and Markdown beside it (.md)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    pipeline = FresnelPipeline.from_checkpoint(args.checkpoint, device)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.image
        if path is None:
            folder = args.out.parent if args.out else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = procedural_image(
                folder / f"fresnel-bench-input-seed{args.seed}.png", args.seed, device=device
            )
        image = Image.open(path)
        image.load()
        report = {
            "hardware": hardware(device),
            "checkpoint": str(args.checkpoint),
            "image": path.name,
            "image_size": list(image.size),
            "runs_timed": args.runs,
            "export": DRAFT.model_dump(),
            **benchmark(pipeline, image, args.runs),
        }
    print(f"hardware: {report['hardware']}", file=sys.stderr)
    text = markdown(report)
    print(text)
    save_report(args.out, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
