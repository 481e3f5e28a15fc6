"""The stored generation of a job (every `MeshWithVoxel` as tensors in one `.npz`), so exports never re-sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from o_voxel.asset import MeshWithVoxel

GENERATION_FILE = "generation.npz"


def save_generation(meshes: list[MeshWithVoxel], path: Path) -> None:
    """Write `meshes` to `path` (the caller makes it atomic); tensors go to CPU first."""
    if not meshes:
        raise ValueError("the engine returned no mesh")
    arrays: dict[str, np.ndarray] = {"count": np.array(len(meshes))}
    for i, m in enumerate(meshes):
        arrays[f"m{i}_vertices"] = m.vertices.detach().float().cpu().numpy()
        arrays[f"m{i}_faces"] = m.faces.detach().to(torch.int32).cpu().numpy()
        arrays[f"m{i}_coords"] = m.coords.detach().to(torch.int32).cpu().numpy()
        arrays[f"m{i}_attrs"] = m.attrs.detach().float().cpu().numpy()
        arrays[f"m{i}_origin"] = m.origin.detach().float().cpu().numpy()
        arrays[f"m{i}_voxel_size"] = np.array(float(m.voxel_size))
        layout = {k: [s.start, s.stop] for k, s in m.layout.items()}
        arrays[f"m{i}_layout"] = np.array(json.dumps(layout))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_generation(path: Path, device: torch.device | str = "cpu") -> list[MeshWithVoxel]:
    with np.load(path, allow_pickle=False) as data:
        meshes = []
        for i in range(int(data["count"])):
            layout = {k: slice(a, b) for k, (a, b) in json.loads(str(data[f"m{i}_layout"])).items()}
            meshes.append(
                MeshWithVoxel(
                    vertices=torch.from_numpy(data[f"m{i}_vertices"]).to(device),
                    faces=torch.from_numpy(data[f"m{i}_faces"]).to(device),
                    coords=torch.from_numpy(data[f"m{i}_coords"]).to(device),
                    attrs=torch.from_numpy(data[f"m{i}_attrs"]).to(device),
                    voxel_size=float(data[f"m{i}_voxel_size"]),
                    origin=torch.from_numpy(data[f"m{i}_origin"]).to(device),
                    layout=layout,
                )
            )
    return meshes
