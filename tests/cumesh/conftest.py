"""Analytic test meshes for the cumesh tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh


def to_torch(mesh: trimesh.Trimesh) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(np.asarray(mesh.vertices), dtype=torch.float32), torch.tensor(
        np.asarray(mesh.faces), dtype=torch.int64
    )


def to_trimesh(vertices: torch.Tensor, faces: torch.Tensor) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices.double().numpy(), faces.numpy(), process=False)


@pytest.fixture
def sphere():
    return to_torch(trimesh.creation.icosphere(subdivisions=3, radius=0.4))


@pytest.fixture
def torus():
    return to_torch(
        trimesh.creation.torus(major_radius=0.3, minor_radius=0.1, major_sections=32, minor_sections=12)
    )
