"""The frames Fresnel works in, shared by the training data and the engine.

- **World**: TRELLIS.2's object frame, Z up; the camera looks at the origin from yaw `phi` and elevation
  `theta`; at `phi = 0` it stands on the -y side, so the object's front faces -y (glTF +z after export).
- **View**: `x` right, `y` forward (depth), `z` up in the image. `p_view = view_rotation @ p_world`.
- **Grid**: the network's cube `[-0.5, 0.5]^3`, a similarity of the view frame fixed by the object's crop
  in the image: the square crop spans `[-CROP_HALF, CROP_HALF]` in grid x (right) and z (up), and the
  object's centre depth is grid y = 0. `p_grid = scale * p_view + offset`.
- **Output**: the grid turned back by the elevation (gravity up again), what the engine exports.
"""

from __future__ import annotations

import torch

CROP_HALF = 0.45  # the crop square maps to [-0.45, 0.45] in the grid: a margin for closed surfaces


def elevation_rotation(theta: torch.Tensor) -> torch.Tensor:
    """`[B, 3, 3]` from the yawed, upright frame to the view frame of a camera pitched down by `theta`."""
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(theta), torch.zeros_like(theta)
    return torch.stack(
        [
            torch.stack([one, zero, zero], -1),
            torch.stack([zero, c, -s], -1),
            torch.stack([zero, s, c], -1),
        ],
        -2,
    )


def yaw_rotation(phi: torch.Tensor) -> torch.Tensor:
    """`[B, 3, 3]` from the world frame to the frame yawed so that the camera stands on its -y side."""
    c, s = torch.cos(phi), torch.sin(phi)
    one, zero = torch.ones_like(phi), torch.zeros_like(phi)
    return torch.stack(
        [
            torch.stack([c, s, zero], -1),
            torch.stack([-s, c, zero], -1),
            torch.stack([zero, zero, one], -1),
        ],
        -2,
    )


def view_rotation(phi: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """`[B, 3, 3]` world -> view for cameras at yaw `phi` and elevation `theta` (radians)."""
    return elevation_rotation(theta) @ yaw_rotation(phi)


def grid_similarity(
    box: torch.Tensor, resolution: int, distance: torch.Tensor, tan_half_fov: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scale [B], offset [B, 3])` of `p_grid = scale * p_view + offset` for crop boxes `[B, 3]`
    (`cx, cy, half` in pixel-edge coordinates of a `resolution`-pixel square render)."""
    cx, cy, half = box.unbind(-1)
    scale = CROP_HALF * resolution / (2 * half * distance * tan_half_fov)
    offset = torch.stack(
        [
            CROP_HALF * (resolution / 2 - cx) / half,
            torch.zeros_like(cx),
            -CROP_HALF * (resolution / 2 - cy) / half,
        ],
        -1,
    )
    return scale, offset
