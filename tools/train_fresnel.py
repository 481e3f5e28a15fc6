"""Train the Fresnel student on procedural objects; every call resumes the run folder where it stopped.

    python -m tools.train_fresnel --run-dir runs/fresnel --budget-minutes 25 --minutes 9   # first call
    python -m tools.train_fresnel --run-dir runs/fresnel --minutes 9                       # later calls
    python -m tools.train_fresnel --run-dir runs/fresnel --export fresnel/weights/fresnel-base
    python -m tools.train_fresnel --run-dir runs/grown --init-from fresnel/weights/fresnel-base \
        --top-down --depth-lifting --decoder-blocks 2 2 2 2 --total-steps 2000 --minutes 9   # grow it

`--budget-minutes` (new runs only) sets the learning-rate schedule's length from the measured speed of this
machine; `--minutes` bounds this call. The run folder holds `state.pt`, `loss.json` and `loss.png`.
With `--init-from`, the network's sizes may add to the checkpoint's (`--decoder-blocks`, `--top-down`,
`--depth-lifting`): the additions start at zero, so step 0 computes what the checkpoint does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from fresnel.config import TINY_CONFIG, FresnelConfig
from fresnel.training import STATE_FILE, TrainSettings, export_checkpoint, train


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def measure_step_seconds(
    config: FresnelConfig, settings: TrainSettings, device: str, steps: int = 12
) -> float:
    """Seconds per training step on this machine (a throwaway run, after two warm-up steps)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        quiet = dataclasses.replace(settings, log_every=10**9, save_every_s=1e9)
        train(Path(tmp), config, quiet, device, max_steps=2, log=lambda _: None)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.monotonic()
        train(Path(tmp), max_steps=2 + steps, device=device, log=lambda _: None)
        return (time.monotonic() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, help="stop this call after this many minutes")
    parser.add_argument("--steps", type=int, help="stop at this total step count")
    parser.add_argument(
        "--budget-minutes", type=float, help="new run: schedule length in minutes of this machine"
    )
    parser.add_argument("--total-steps", type=int, help="new run: schedule length in steps")
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--warmup-steps", type=int, default=TrainSettings.warmup_steps)
    parser.add_argument(
        "--data-chunk",
        type=int,
        default=TrainSettings.data_chunk,
        help="batches of objects made per data call",
    )
    parser.add_argument(
        "--depth-shift-voxels",
        type=int,
        default=TrainSettings.depth_shift_voxels,
        help="new run: each object's targets may move this far along the depth axis to fit the prediction",
    )
    parser.add_argument(
        "--max-parts",
        type=int,
        default=TrainSettings.max_parts,
        help="new run: the largest number of parts of a training object (the training rules' other fields stay)",
    )
    parser.add_argument(
        "--decoder-blocks",
        type=int,
        nargs="+",
        help="new run: residual blocks per 3D level, coarse to fine (with --init-from, at least the "
        "checkpoint's: the added blocks start as the identity)",
    )
    parser.add_argument(
        "--top-down", action="store_true", help="new run: a top-down path in the image encoder"
    )
    parser.add_argument(
        "--depth-lifting",
        action="store_true",
        help="new run: image features placed along each ray by a predicted depth distribution",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny test configuration (CPU smoke runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--init-from", type=Path, help="new run: start from this engine checkpoint's weights")
    parser.add_argument("--export", type=Path, help="write the run's network as an engine checkpoint folder")
    args = parser.parse_args(argv)

    if args.export:
        model = export_checkpoint(args.run_dir, args.export)
        count = sum(p.numel() for p in model.parameters())
        print(f"exported {count / 1e6:.2f} M parameters to {args.export}")
        return 0
    config = TINY_CONFIG if args.tiny else FresnelConfig()
    if args.decoder_blocks:
        config = dataclasses.replace(config, decoder_blocks=tuple(args.decoder_blocks))
    config = dataclasses.replace(config, top_down=args.top_down, depth_lifting=args.depth_lifting)
    settings = TrainSettings(
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        data_chunk=args.data_chunk,
        depth_shift_voxels=args.depth_shift_voxels,
        max_parts=args.max_parts,
    )
    if args.tiny:
        settings = dataclasses.replace(
            settings, render_resolution=48, render_steps=24, warmup_steps=2, log_every=1, data_chunk=1
        )
    print(f"hardware: {hardware()}", flush=True)
    if not (args.run_dir / STATE_FILE).exists():
        total = args.total_steps
        if total is None and args.budget_minutes:
            seconds = measure_step_seconds(config, settings, args.device)
            total = max(settings.warmup_steps + 1, int(args.budget_minutes * 60 / seconds))
            print(
                f"measured {seconds * 1000:.0f} ms per step: {total} steps in {args.budget_minutes} min",
                flush=True,
            )
        settings = dataclasses.replace(settings, total_steps=total or settings.total_steps)
    state = train(
        args.run_dir,
        config,
        settings,
        args.device,
        max_steps=args.steps,
        max_minutes=args.minutes,
        log=lambda line: print(line, flush=True),
        init_from=args.init_from,
    )
    last = state["history"][-1] if state["history"] else {}
    print(
        json.dumps({"step": state["step"], "seconds": round(state["seconds"], 1), "last": last}), flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
