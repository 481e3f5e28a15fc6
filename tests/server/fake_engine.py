"""A small, controllable engine for queue/store tests: N steps of `step_s` seconds, a cube mesh, and
failure modes chosen by the seed (OOM, crash), so tests can drive every worker path deterministically."""

from __future__ import annotations

import os
import time

import torch

from gui.backend.engines.base import Engine, EngineRequest, EngineStatus
from o_voxel.asset import MeshWithVoxel
from trellis2.progress import raise_if_cancelled

OOM_SEED = 13
CRASH_SEED = 666
PROCESS_CRASH_SEED = 777  # the process dies, as with a segfault in a native library


def cube_mesh(resolution: int = 8) -> MeshWithVoxel:
    corners = torch.tensor([[x, y, z] for x in (-0.3, 0.3) for y in (-0.3, 0.3) for z in (-0.3, 0.3)])
    faces = torch.tensor(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ],
        dtype=torch.int32,
    )
    grid = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    attrs = torch.cat([grid.float() / resolution, torch.full((len(grid), 3), 0.5)], dim=1)
    return MeshWithVoxel(corners.float(), faces, grid.int(), attrs, voxel_size=1.0 / resolution)


class FakeEngine(Engine):
    def __init__(
        self,
        name: str = "trellis2",
        steps: int = 5,
        step_s: float = 0.05,
        ready: bool = True,
        mesh: str = "cube",
    ) -> None:
        super().__init__(models_dir=".")
        self.name = name
        self.steps = steps
        self.step_s = step_s
        self.ready = ready
        self.mesh = MESHES[mesh]
        self._loaded = False
        self.loads = 0

    def status(self) -> EngineStatus:
        return EngineStatus(self.ready, "" if self.ready else f"{self.name} is not installed in this test")

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self._loaded = True
        self.loads += 1

    def unload(self) -> None:
        self._loaded = False

    def stage_plan(self, params):
        return [("loading", 1.0), ("sampling", float(self.steps)), ("saving", 0.2), ("export", 1.0)]

    def run(self, request: EngineRequest, progress, cancel):
        seed = getattr(request.params, "seed", 0)
        for step in range(self.steps):
            raise_if_cancelled(cancel)
            time.sleep(self.step_s)
            if seed == OOM_SEED and step == 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            if seed == PROCESS_CRASH_SEED and step == 1:
                os._exit(17)
            if seed == CRASH_SEED and step == 1:
                raise ValueError("something inside the engine broke")
            progress("sampling", step + 1, self.steps)
        if self.name == "fresnel":  # a draft keeps its structure, as the real Fast engine's jobs do
            request.extra["structure"] = torch.ones(8, 8, 8, dtype=torch.bool)
        return [self.mesh()]


def bumpy_sphere_mesh(subdivisions: int = 6, resolution: int = 64) -> MeshWithVoxel:
    """A sphere of 81,920 faces with a rough surface (seeded): its UV unwrap and bake take seconds on a CPU, so
    tests can act while the export is inside them."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.35)
    rough = 1 + 0.03 * torch.rand(len(sphere.vertices), 1, generator=torch.Generator().manual_seed(0))
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32) * rough
    grid = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid.float() + 0.5) / resolution - 0.5
    shell = (centres.norm(dim=1) - 0.35).abs() < 2.0 / resolution
    attrs = torch.cat([centres[shell] + 0.5, torch.full((int(shell.sum()), 3), 0.5)], dim=1)
    faces = torch.tensor(sphere.faces, dtype=torch.int32)
    return MeshWithVoxel(vertices, faces, grid[shell].int(), attrs, voxel_size=1.0 / resolution)


MESHES = {"cube": cube_mesh, "bumpy_sphere": bumpy_sphere_mesh}


def fake_engines(
    models_dir=None,
    device=None,
    steps: int = 5,
    step_s: float = 0.05,
    mesh: str = "cube",
    fast_ready: bool = False,
) -> dict[str, Engine]:
    """The three engines, faked; the Fast one is not ready unless `fast_ready`."""
    return {
        "trellis2": FakeEngine("trellis2", steps, step_s, mesh=mesh),
        "multiview": FakeEngine("multiview", steps, step_s, mesh=mesh),
        "fresnel": FakeEngine("fresnel", steps, step_s, ready=fast_ready, mesh=mesh),
    }
