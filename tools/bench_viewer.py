"""Benchmark the model viewer: GLB parse time, first frame and frame time per view mode, JS heap.

    .venv/bin/python tools/bench_viewer.py --quick                 # seconds, software GL (SwiftShader)
    .venv/bin/python tools/bench_viewer.py --faces 1000000 --texture 2048 --device gpu

Builds a textured PBR sphere GLB (base colour, metallic-roughness and normal maps) of about `--faces`
triangles, serves the renderer with it on 127.0.0.1 and drives the real `Viewer` class in headless
Chromium (tools/bench_viewer.mjs). `--device cpu` renders with SwiftShader, `--device gpu`
asks Chromium for the machine's GPU (the GL renderer in the output says which one was used).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.browser_harness import BENCH_VIEWER_SCRIPT, missing_browser_tooling, run_node_script  # noqa: E402

RENDERER_DIR = REPO_ROOT / "gui" / "electron" / "renderer"
BENCH_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>viewer bench</title></head><body></body></html>"
)


def sphere_glb(faces: int, texture: int, path: Path) -> int:
    """A UV-mapped PBR sphere with at least `faces` triangles written as GLB; returns its face count."""
    import trimesh
    from PIL import Image

    subdivisions = max(1, math.ceil(math.log(max(faces, 80) / 20, 4)))
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)
    v = mesh.vertices
    uv = np.stack(
        [
            0.5 + np.arctan2(v[:, 2], v[:, 0]) / (2 * np.pi),
            0.5 + np.arcsin(np.clip(v[:, 1] / 0.5, -1, 1)) / np.pi,
        ],
        1,
    )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:texture, 0:texture] / texture
    base = np.stack(
        [0.6 + 0.4 * np.sin(12 * xx), 0.5 + 0.4 * np.cos(9 * yy), 0.4 + 0.2 * rng.random((texture, texture))],
        -1,
    )
    mr = np.stack([np.zeros_like(xx), 0.3 + 0.6 * yy, (xx > 0.5).astype(float)], -1)
    normal = np.stack([0.5 + 0.1 * np.sin(40 * xx), 0.5 + 0.1 * np.cos(40 * yy), np.ones_like(xx)], -1)
    as_image = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))  # noqa: E731
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=as_image(base),
        metallicRoughnessTexture=as_image(mr),
        normalTexture=as_image(normal),
        metallicFactor=1.0,
        roughnessFactor=1.0,
    )
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    path.write_bytes(mesh.export(file_type="glb"))
    return len(mesh.faces)


class BenchHandler(http.server.SimpleHTTPRequestHandler):
    """The renderer folder at `/`, the benchmark page and model under `/bench/`."""

    def __init__(self, *args, bench_dir: Path, **kwargs):
        self.bench_dir = bench_dir
        super().__init__(*args, directory=str(RENDERER_DIR), **kwargs)

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path == "/bench/page.html":
            self._send(BENCH_PAGE, "text/html")
        elif self.path == "/bench/model.glb":
            self._send((self.bench_dir / "model.glb").read_bytes(), "model/gltf-binary")
        else:
            super().do_GET()

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "gpu"], default="cpu", help="cpu: SwiftShader; gpu: the GPU"
    )
    parser.add_argument("--faces", type=int, default=300_000, help="triangles in the test model")
    parser.add_argument("--texture", type=int, default=2048, help="texture size in pixels")
    parser.add_argument("--frames", type=int, default=30, help="frames timed per view mode")
    parser.add_argument("--quick", action="store_true", help="a small model and few frames (seconds on CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.faces, args.texture, args.frames = 5_000, 256, 3
    reason = missing_browser_tooling()
    if reason:
        print(f"cannot run the viewer benchmark: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="genesis-bench-viewer-") as tmp:
        bench_dir = Path(tmp)
        faces = sphere_glb(args.faces, args.texture, bench_dir / "model.glb")
        size = (bench_dir / "model.glb").stat().st_size
        handler = functools.partial(BenchHandler, bench_dir=bench_dir)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            result = run_node_script(
                BENCH_VIEWER_SCRIPT,
                "--url",
                url,
                "--frames",
                str(args.frames),
                "--gl",
                "swiftshader" if args.device == "cpu" else "gpu",
                timeout_s=900,
            )
        finally:
            server.shutdown()
    if result.returncode != 0:
        print(result.stdout, result.stderr, file=sys.stderr)
        return result.returncode
    data = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"GL renderer: {data['glRenderer']}")
    print(
        f"model: {faces:,} faces, {data['stats']['vertices']:,} vertices, texture {args.texture} px, GLB {size / 2**20:.1f} MiB"
    )
    print(
        f"parse + upload: {data['loadMs']:.0f} ms; first frame: {data['firstFrameMs']:.0f} ms; "
        f"JS heap: {data['heapMB'] or float('nan'):.0f} MiB"
    )
    for mode, ms in data["perMode"].items():
        print(f"  {mode:<10} {ms:8.1f} ms/frame  ({1000 / max(ms, 1e-6):6.1f} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
