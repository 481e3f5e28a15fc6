"""Run the real server with the fake engines (for the live API tests): same flags as `genesis serve`,
plus `--steps` and `--step-s` for the fake engines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gui.backend.cli import add_server_flags, settings_from  # noqa: E402
from gui.backend.server import serve  # noqa: E402
from gui.backend.worker_process import EngineSpec  # noqa: E402
from tests.server.fake_engine import MESHES  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_server_flags(parser)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-s", type=float, default=0.05)
    parser.add_argument(
        "--real-export", action="store_true", help="use the O-Voxel export, not vertex colours"
    )
    parser.add_argument("--mesh", choices=sorted(MESHES), default="cube", help="what the fake engines make")
    parser.add_argument("--fast-ready", action="store_true", help="the fake Fast engine is ready too")
    args = parser.parse_args()
    spec = EngineSpec(
        "tests.server.fake_engine:fake_engines",
        {"steps": args.steps, "step_s": args.step_s, "mesh": args.mesh, "fast_ready": args.fast_ready},
        converter=None if args.real_export else "gui.backend.export:vertex_colored_mesh",
    )
    serve(settings_from(args), spec)
