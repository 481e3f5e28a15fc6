"""Benchmark the cumesh operations: seconds and peak memory per operation on a dense mesh of N faces.

Usage: python tools/bench_cumesh.py [--device cuda] [--faces 5000000] [--target 500000]
       [--texture-size 2048] [--remesh-res 1024] [--quick] [--json out.json]
The input is a bumpy icosphere (sphere with a smooth random radial displacement), similar in density
and regularity to a decoded O-Voxel mesh. `--quick` runs a ~20K-face version in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cumesh  # noqa: E402


def dense_mesh(num_faces: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Icosphere subdivided until it has about `num_faces` faces, with smooth bumps, radius ~0.45."""
    import trimesh

    level = max(0, round(math.log(max(num_faces, 20) / 20, 4)))
    mesh = trimesh.creation.icosphere(subdivisions=level, radius=1.0)
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    freq = torch.randn(8, 3, generator=g) * 3
    phase = torch.rand(8, generator=g) * 6.28
    bump = torch.sin(v @ freq.T + phase).sum(1) * 0.02
    v = v * (0.4 * (1 + bump))[:, None]
    return v.to(device), torch.tensor(mesh.faces, dtype=torch.int64, device=device)


class Recorder:
    def __init__(self, device: torch.device):
        self.device = device
        self.rows: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            mem = {"peak_gpu_gib": round(peak, 3)}
        else:
            mem = {
                "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
            }
        row = {"op": name, "seconds": round(time.perf_counter() - start, 3), **mem}
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--faces", type=int, default=5_000_000)
    parser.add_argument("--target", type=int, default=500_000, help="decimation target (faces)")
    parser.add_argument("--texture-size", type=int, default=2048, help="closest-point queries = size^2")
    parser.add_argument("--remesh-res", type=int, default=1024)
    parser.add_argument(
        "--simplify-method", default="auto", choices=["auto", "parallel", "fast_simplification"]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, runs in seconds on a CPU")
    parser.add_argument("--json", type=Path, help="write all rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.faces, args.target, args.texture_size, args.remesh_res = 20_000, 4_000, 64, 32
    device = torch.device(args.device)
    rec = Recorder(device)
    v, f = dense_mesh(args.faces, device)
    print(json.dumps({"device": str(device), "faces": f.shape[0], "vertices": v.shape[0]}), flush=True)

    v0, f0 = rec.run("fill_holes", cumesh.fill_holes, v, f, 3e-2)
    bvh = rec.run("MeshBVH build", cumesh.MeshBVH, v0, f0)
    vs, fs = rec.run(
        "simplify 3x target", cumesh.simplify, v0, f0, 3 * args.target, method=args.simplify_method
    )
    vs, fs = rec.run("remove_duplicate_faces", cumesh.remove_duplicate_faces, vs, fs)
    vs, fs = rec.run("repair_non_manifold_edges", cumesh.repair_non_manifold_edges, vs, fs)
    vs, fs = rec.run(
        "remove_small_connected_components", cumesh.remove_small_connected_components, vs, fs, 1e-5
    )
    vs, fs = rec.run("fill_holes (simplified)", cumesh.fill_holes, vs, fs, 3e-2)
    vs, fs = rec.run("simplify target", cumesh.simplify, vs, fs, args.target, method=args.simplify_method)
    vs, fs = rec.run("unify_face_orientations", cumesh.unify_face_orientations, vs, fs)
    vs, fs = rec.run("remove_degenerate_faces", cumesh.remove_degenerate_faces, vs, fs)
    rec.run("vertex_normals", cumesh.vertex_normals, vs, fs)
    ov, of, uvs, vmap = rec.run("uv_unwrap", cumesh.uv_unwrap, vs, fs)
    rec.run("remove_uv_degenerate_faces", cumesh.remove_uv_degenerate_faces, ov, of, uvs, vmap=vmap)
    # texel queries: points on the simplified surface, as many as texels
    n = args.texture_size**2
    g = torch.Generator(device="cpu").manual_seed(1)
    face = torch.randint(0, of.shape[0], (n,), generator=g).to(device)
    w = torch.rand(n, 3, generator=g).to(device)
    w = w / w.sum(1, keepdim=True)
    points = (ov[of[face]] * w[:, :, None]).sum(1)
    rec.run(f"closest_point x{n}", bvh.closest_point, points)
    res = args.remesh_res
    rec.run(
        f"remesh_narrow_band_dc R={res}",
        cumesh.remesh_narrow_band_dc,
        v0,
        f0,
        [0, 0, 0],
        (res + 3) / res,
        res,
        band=1,
        project_back=0.0,
        bvh=bvh,
    )
    total = sum(r["seconds"] for r in rec.rows)
    print(json.dumps({"total_seconds": round(total, 3)}))
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rec.rows}, indent=1)
        )


if __name__ == "__main__":
    main()
