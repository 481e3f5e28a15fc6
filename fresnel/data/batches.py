"""Training batches made on the fly: procedural objects, their renders as the engine sees images, and the
network's targets in the grid frame (`fresnel.frames`).

`make_batch` is deterministic for a given `torch.Generator` state, so a run resumes with the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..frames import grid_similarity
from ..image_input import crop_to_object
from .render import TRAIN_CAMERAS, CameraRules, Cameras, render, sample_cameras
from .scenes import TRAIN_RULES, SceneRules, Scenes, materials, sample_scenes, signed_distance

RENDER_RESOLUTION = 192  # renders are cropped to the object, then sampled down to the network's input size
SOFT_OCCUPANCY_VOXELS = 0.75  # width (in voxels) of the soft step the occupancy target makes at the surface


@dataclass
class Batch:
    images: torch.Tensor  # [B, 4, S, S] premultiplied RGB + alpha, as `crop_to_object` makes them
    occupancy: torch.Tensor | None  # [B, G, G, G] soft inside-ness in [0, 1] at voxel centres (x, y, z)
    distance: torch.Tensor | None  # [B, G, G, G] signed distance in voxels (negative inside)
    attributes: torch.Tensor | None  # [B, 6, G, G, G] sRGB base colour, metallic, roughness, alpha
    elevation: torch.Tensor  # [B] camera elevation, radians
    scenes: Scenes
    cameras: Cameras
    to_world: torch.Tensor  # [B, 4, 4] grid -> world (for evaluation)


def grid_centres(resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`[G^3, 3]` voxel centres of the cube `[-0.5, 0.5]^3`, x-major (matches `[G, G, G]` tensors)."""
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution - 0.5
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def grid_to_world(cameras: Cameras, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """`[B, 4, 4]` homogeneous map from grid to world: `p_world = R^T (p_grid - offset) / scale`."""
    rot_t = cameras.rotation.transpose(1, 2)
    out = torch.zeros(rot_t.shape[0], 4, 4, device=rot_t.device)
    out[:, :3, :3] = rot_t / scale[:, None, None]
    out[:, :3, 3] = -(rot_t @ offset[..., None])[..., 0] / scale[:, None]
    out[:, 3, 3] = 1
    return out


def make_batch(
    batch_size: int,
    generator: torch.Generator,
    grid: int = 64,
    image_size: int = 128,
    rules: SceneRules = TRAIN_RULES,
    cameras: CameraRules = TRAIN_CAMERAS,
    device: torch.device | str = "cpu",
    render_steps: int = 40,
    render_resolution: int = RENDER_RESOLUTION,
    targets: bool = True,
) -> Batch:
    """Objects whose render shows them whole (cut-off or empty renders are drawn again, at most 4 times).
    With `targets=False` the grid targets are left out (None): the same objects and images, for evaluation."""
    device = torch.device(device)
    scenes = sample_scenes(batch_size, generator, rules, device)
    cams = sample_cameras(batch_size, generator, cameras, device)
    rgba = render(scenes, cams, render_resolution, generator, render_steps)
    for _ in range(4):
        border = torch.cat([rgba[:, 3, 0], rgba[:, 3, -1], rgba[:, 3, :, 0], rgba[:, 3, :, -1]], dim=1)
        bad = (border > 0.05).any(dim=1) | ~(rgba[:, 3] > 0.8).any(dim=(1, 2))
        if not bool(bad.any()):
            break
        idx = bad.nonzero().squeeze(1)
        fresh = sample_scenes(idx.numel(), generator, rules, device)
        fresh_cams = sample_cameras(idx.numel(), generator, cameras, device)
        fresh_cams.distance = fresh_cams.distance * 1.2
        for name in vars(scenes):
            getattr(scenes, name)[idx] = getattr(fresh, name)
        for name in vars(cams):
            getattr(cams, name)[idx] = getattr(fresh_cams, name)
        rgba[idx] = render(fresh, fresh_cams, render_resolution, generator, render_steps)
    images, boxes, _ = crop_to_object(rgba, image_size)
    scale, offset = grid_similarity(boxes, render_resolution, cams.distance, cams.tan_half_fov)
    to_world = grid_to_world(cams, scale, offset)
    if not targets:
        return Batch(images, None, None, None, cams.elevation, scenes, cams, to_world)
    centres = grid_centres(grid, device)
    world = centres[None] @ to_world[:, :3, :3].transpose(1, 2) + to_world[:, None, :3, 3]
    distance = signed_distance(scenes, world) * scale[:, None] * grid
    attributes = materials(scenes, world)
    attributes[..., :3] = attributes[..., :3].clamp(0, 1) ** (1 / 2.2)  # textures hold sRGB base colour
    shape = (batch_size, grid, grid, grid)
    return Batch(
        images=images,
        occupancy=torch.sigmoid(-distance / SOFT_OCCUPANCY_VOXELS).reshape(shape),
        distance=distance.reshape(shape),
        attributes=attributes.permute(0, 2, 1).reshape(batch_size, 6, grid, grid, grid),
        elevation=cams.elevation,
        scenes=scenes,
        cameras=cams,
        to_world=to_world,
    )
