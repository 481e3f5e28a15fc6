"""Benchmark the O-Voxel export on dense decoded-like O-Voxel meshes: `to_glb` + the GLB writer, and (for STL and
PLY) `to_vertex_colored_mesh` + the PLY writer, which skip the UV unwrap and the bake.

Builds a bumpy sphere ("noisy blob") directly as a flexible dual grid at a resolution that gives about N
faces (active voxels around sign changes of an analytic SDF, dual vertices on the surface), attaches smooth
PBR voxel attributes, then runs each format with remesh off and on. Reports seconds and peak memory per step
(GPU: torch.cuda.max_memory_allocated; CPU: peak resident set size sampled every 10 ms) and the hardware.

    python tools/bench_export.py --quick                      # seconds, CPU smoke test
    python tools/bench_export.py --device cuda --out bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from o_voxel.boxes import enumerate_boxes
from o_voxel.convert import flexible_dual_grid_to_mesh
from o_voxel.export import export_asset
from o_voxel.postprocess import to_glb, to_vertex_colored_mesh

AABB = [[-0.5] * 3, [0.5] * 3]
LAYOUT = {"base_color": slice(0, 3), "metallic": slice(3, 4), "roughness": slice(4, 5), "alpha": slice(5, 6)}
RADIUS, BUMP, FREQ = 0.38, 0.012, 23.0


def blob_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed distance-like field of a bumpy sphere (world units)."""
    bump = torch.sin(FREQ * p[..., 0]) * torch.sin(FREQ * p[..., 1] + 1.0) * torch.sin(FREQ * p[..., 2] + 2.0)
    return p.norm(dim=-1) - RADIUS - BUMP * bump


def resolution_for_faces(faces: int) -> int:
    """Grid resolution giving about `faces` triangles (~5.6 R^2 for this blob), a multiple of 64."""
    return max(64, int(round(math.sqrt(faces / 5.6) / 64)) * 64)


def build_blob(
    res: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense decoded-like mesh of the blob at grid `res`: (vertices, faces, voxel attributes, voxel coords)."""
    vs = 1.0 / res
    shell = (RADIUS + BUMP + 2 * vs, max(RADIUS - BUMP - 2 * vs, 0.0))
    coords_parts = []
    idx = torch.arange(res, device=device)
    centre = (idx + 0.5) * vs - 0.5
    for k in range(res):  # voxels whose centre lies in the shell, one z slab at a time
        z = float(centre[k])
        if abs(z) > shell[0]:
            continue
        rho2 = centre[:, None] ** 2 + z * z  # (y) -> y^2 + z^2
        outer = torch.sqrt((shell[0] ** 2 - rho2).clamp(min=0))
        inner = torch.sqrt((shell[1] ** 2 - rho2).clamp(min=0))
        has = rho2[:, 0] < shell[0] ** 2
        ys = idx[has]
        o, i_ = outer[has, 0], inner[has, 0]
        to_index = lambda x: torch.floor((x + 0.5) * res)  # noqa: E731
        lo_hi = [(to_index(-o), to_index(-i_)), (to_index(i_), to_index(o))]
        for lo, hi in lo_hi:
            lo = lo.clamp(0, res - 1).long()
            hi = hi.clamp(0, res - 1).long()
            owner, x = enumerate_boxes(lo[:, None], hi[:, None])
            coords_parts.append(torch.stack([x[:, 0], ys[owner], torch.full_like(owner, k)], 1))
    coords = torch.unique(torch.cat(coords_parts), dim=0)
    corner = lambda c: blob_sdf(c.to(torch.float32) * vs - 0.5)  # noqa: E731
    # keep the voxels with a sign change among their 8 corners (= a crossed edge among their 12 edges)
    inside = torch.stack(
        [corner(coords + torch.tensor(o, device=device)) < 0 for o in np.ndindex(2, 2, 2)], 1
    )
    coords = coords[inside.any(1) & ~inside.all(1)]
    base = corner(coords + 1)  # the corner shared by the three owned edges
    flags = torch.stack(
        [
            (corner(coords + torch.tensor([0, 1, 1], device=device)) < 0) != (base < 0),
            (corner(coords + torch.tensor([1, 0, 1], device=device)) < 0) != (base < 0),
            (corner(coords + torch.tensor([1, 1, 0], device=device)) < 0) != (base < 0),
        ],
        1,
    )
    # dual vertex: the voxel centre moved onto the surface along the radial direction
    c = (coords.to(torch.float32) + 0.5) * vs - 0.5
    d = blob_sdf(c)
    p = c - d[:, None] * c / c.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    offsets = ((p + 0.5) * res - coords).clamp(-0.5, 1.5)
    vertices, faces = flexible_dual_grid_to_mesh(coords.int(), offsets, flags, None, AABB, grid_size=res)
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    attrs = torch.stack(
        [
            0.5 + 0.3 * torch.sin(9 * x),
            0.5 + 0.3 * torch.cos(7 * y),
            0.5 + 0.3 * torch.sin(5 * z),
            0.5 + 0.4 * torch.sin(6 * (x + y)),
            0.5 + 0.4 * torch.cos(8 * z),
            torch.ones_like(x),
        ],
        1,
    )
    return vertices, faces, attrs, coords.int()


class PeakMemory:
    """Per-step peak memory: CUDA allocator peak, or the process RSS sampled in a background thread."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = None
        if device.type != "cuda":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_rss = max(self.peak_rss, self._rss())

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_rss = self._rss()

    def read_gb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        return max(self.peak_rss, self._rss()) / 2**30

    def close(self) -> None:
        self._stop.set()


def hardware(device: torch.device) -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_case(
    vertices, faces, attrs, coords, res, target, texture, remesh, device, out_dir: Path, fmt: str = "glb"
) -> dict:
    """One export of the blob as `fmt` ('glb': textured; 'ply': vertex colours, no bake), timed per step."""
    memory = PeakMemory(device)
    steps: list[dict] = []
    start = last = time.perf_counter()
    memory.reset()

    running: list[str] = []  # the step the export said it was starting

    def progress(stage: str, step: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if running:  # the time since the last report belongs to the step that report started
            steps.append(
                {"step": running[0], "seconds": round(now - last, 3), "peak_gb": round(memory.read_gb(), 3)}
            )
        running[:] = [stage] if step < total else []
        memory.reset()
        last = now

    common = {"grid_size": res, "decimation_target": target, "remesh": remesh, "progress": progress}
    if fmt == "glb":
        mesh = to_glb(vertices, faces, attrs, coords, LAYOUT, AABB, texture_size=texture, **common)
    else:
        mesh = to_vertex_colored_mesh(vertices, faces, attrs, coords, LAYOUT, AABB, **common)
    path = export_asset(mesh, out_dir, f"bench_{len(faces)}_{'remesh' if remesh else 'simplify'}", fmt)
    now = time.perf_counter()
    steps.append(
        {"step": f"write {fmt}", "seconds": round(now - last, 3), "peak_gb": round(memory.read_gb(), 3)}
    )
    memory.close()
    return {
        "input_faces": int(faces.shape[0]),
        "resolution": res,
        "voxels": int(coords.shape[0]),
        "format": fmt,
        "remesh": remesh,
        "decimation_target": target,
        "texture_size": texture if fmt == "glb" else None,
        "output_faces": int(len(mesh.faces)),
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "total_seconds": round(now - start, 3),
        "peak_gb": max(s["peak_gb"] for s in steps),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="one small mesh, small texture: a smoke test")
    parser.add_argument(
        "--faces", default="1000000,5000000,20000000", help="comma-separated input face counts"
    )
    parser.add_argument("--decimation-target", type=int, default=500000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument(
        "--remesh", choices=["off", "on", "both"], default=None, help="default: both (off if --quick)"
    )
    parser.add_argument(
        "--formats", default=None, help="comma-separated: glb, ply (default: glb,ply; glb if --quick)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the results as JSON here (GLBs beside it)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    face_counts = [12000] if args.quick else [int(x) for x in args.faces.split(",")]
    target = 2000 if args.quick else args.decimation_target
    texture = 512 if args.quick else args.texture_size
    remesh = args.remesh or ("off" if args.quick else "both")
    modes = {"off": [False], "on": [True], "both": [False, True]}[remesh]
    formats = (args.formats or ("glb" if args.quick else "glb,ply")).split(",")
    out_dir = args.out.parent if args.out else Path(tempfile.mkdtemp(prefix="bench_export_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"hardware": hardware(device), "device": str(device), "cases": []}
    print(json.dumps(results["hardware"]))
    for count in face_counts:
        res = resolution_for_faces(count) if not args.quick else 48
        t = time.perf_counter()
        vertices, faces, attrs, coords = build_blob(res, device)
        print(
            f"built {faces.shape[0]} faces, {coords.shape[0]} voxels at R={res} in {time.perf_counter() - t:.1f}s"
        )
        for fmt in formats:
            for remesh in modes:
                case = run_case(
                    vertices, faces, attrs, coords, res, target, texture, remesh, device, out_dir, fmt
                )
                results["cases"].append(case)
                print(
                    f"{fmt} faces={case['input_faces']} remesh={remesh}: {case['total_seconds']}s "
                    f"peak {case['peak_gb']} GB"
                )
                for s in case["steps"]:
                    print(f"    {s['step']:<18} {s['seconds']:>9.3f}s  {s['peak_gb']:>7.3f} GB")
        del vertices, faces, attrs, coords
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
