"""A given sparse structure (e.g. a Fresnel draft's occupancy) takes the place of stage 1 exactly."""

from __future__ import annotations

import pytest
import torch

from tests.pipelines.images import object_image
from trellis2.pipelines.sampling_stages import structure_coords


def ball(size: int = 64, radius: float = 0.3) -> torch.Tensor:
    axis = (torch.arange(size) + 0.5) / size - 0.5
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return (x**2 + y**2 + z**2).sqrt() < radius


def test_structure_coords_pool_any_occupied_cell():
    grid = torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool)
    grid[0, 0, 3, 0, 1] = True
    assert structure_coords(grid, 2).tolist() == [[0, 1, 0, 0]]
    assert structure_coords(grid, 4).tolist() == [[0, 3, 0, 1]]
    with pytest.raises(ValueError):
        structure_coords(grid, 3)
    with pytest.raises(RuntimeError):
        structure_coords(torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool), 2)


@pytest.mark.parametrize("pipeline_type", ["512"])
def test_a_given_structure_is_the_sparse_structure_and_is_deterministic(
    tiny_pipeline, monkeypatch, pipeline_type
):
    seen: list[torch.Tensor] = []
    original = type(tiny_pipeline).sample_shape_slat

    def spy(self, cond, flow_key, coords, *args, **kwargs):
        seen.append(coords.clone())
        return original(self, cond, flow_key, coords, *args, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("stage 1 must not run when a structure is given")

    monkeypatch.setattr(type(tiny_pipeline), "sample_shape_slat", spy)
    monkeypatch.setattr(type(tiny_pipeline), "sample_sparse_structure", never)
    steps = {"steps": 2}
    run = lambda: tiny_pipeline.run(  # noqa: E731
        object_image(),
        seed=5,
        pipeline_type=pipeline_type,
        structure=ball(),
        shape_slat_sampler_params=steps,
        tex_slat_sampler_params=steps,
    )[0]
    a, b = run(), run()
    resolution = 64 if pipeline_type == "1024" else 32
    assert torch.equal(seen[0], structure_coords(ball()[None, None], resolution)) and torch.equal(
        seen[0], seen[1]
    )
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.attrs, b.attrs)
