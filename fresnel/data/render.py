"""Sphere-traced RGBA renders of procedural objects: random camera, light and exposure, transparent background.

Shading is a small physically-motivated model (Lambert + normalised Blinn-Phong with a Fresnel-free F0, a
sky/ground environment for reflections, ambient occlusion from the distance field) — enough for depth, shape
and material cues. Everything is batched over objects and rays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..frames import view_rotation
from .scenes import Scenes, materials, signed_distance

BOUNDING_RADIUS = 0.45 * math.sqrt(3)  # objects lie inside [-0.45, 0.45]^3


@dataclass(frozen=True)
class CameraRules:
    """Random cameras: yaw all round, elevation and field of view in these ranges (degrees)."""

    elevation: tuple[float, float] = (-10.0, 45.0)
    fov: tuple[float, float] = (25.0, 50.0)
    framing: tuple[float, float] = (1.0, 1.25)  # camera distance over the distance that just fits the object


TRAIN_CAMERAS = CameraRules()
EVAL_CAMERAS = CameraRules(fov=(20.0, 60.0), framing=(1.0, 1.4))


@dataclass
class Cameras:
    yaw: torch.Tensor  # [B] radians
    elevation: torch.Tensor  # [B] radians
    tan_half_fov: torch.Tensor  # [B]
    distance: torch.Tensor  # [B] from the origin

    @property
    def rotation(self) -> torch.Tensor:
        return view_rotation(self.yaw, self.elevation)

    @property
    def position(self) -> torch.Tensor:
        """`[B, 3]` world position: `distance` behind the origin along the view's forward axis."""
        forward = self.rotation[:, 1]
        return -forward * self.distance[:, None]


def sample_cameras(
    batch: int,
    generator: torch.Generator,
    rules: CameraRules = TRAIN_CAMERAS,
    device: torch.device | str = "cpu",
) -> Cameras:
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=generator, device=device)

    fov = torch.deg2rad(uniform(*rules.fov))
    tan_half = torch.tan(fov / 2)
    fit = BOUNDING_RADIUS / torch.sin(fov / 2) * 0.8  # objects rarely fill their bounding sphere
    return Cameras(
        yaw=uniform(0.0, 2 * math.pi),
        elevation=torch.deg2rad(uniform(*rules.elevation)),
        tan_half_fov=tan_half,
        distance=fit * uniform(*rules.framing),
    )


def camera_rays(cameras: Cameras, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(origins [B, 1, 3], directions [B, R*R, 3])` in the world frame, rows top to bottom."""
    device = cameras.yaw.device
    t = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    z_ndc, x_ndc = torch.meshgrid(-t, t, indexing="ij")
    b = cameras.yaw.shape[0]
    th = cameras.tan_half_fov[:, None]
    local = torch.stack(
        [
            x_ndc.reshape(1, -1) * th,
            torch.ones(b, resolution * resolution, device=device),
            z_ndc.reshape(1, -1) * th,
        ],
        -1,
    )
    directions = torch.nn.functional.normalize(torch.einsum("bji,bnj->bni", cameras.rotation, local), dim=-1)
    return cameras.position[:, None], directions


def _normals(scenes: Scenes, points: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Tetrahedral finite differences of the distance field (4 evaluations)."""
    k = torch.tensor(
        [[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=points.dtype, device=points.device
    )
    n = sum(k[i] * signed_distance(scenes, points + eps * k[i])[..., None] for i in range(4))
    return torch.nn.functional.normalize(n, dim=-1)


def sphere_trace(
    scenes: Scenes, origins: torch.Tensor, directions: torch.Tensor, steps: int = 40
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(t [B, N], hit [B, N])`: distance along each ray to the surface, starting at the bounding sphere."""
    oc = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - BOUNDING_RADIUS**2
    disc = oc * oc - c
    through = disc > 0
    root = torch.sqrt(disc.clamp_min(0))
    t = (-oc - root).clamp_min(0)
    t_far = -oc + root
    for _ in range(steps):
        d = signed_distance(scenes, origins + t[..., None] * directions)
        t = torch.where(through & (t < t_far), t + 0.9 * d, t)
    d = signed_distance(scenes, origins + t[..., None] * directions)
    return t, through & (t < t_far) & (d.abs() < 4e-3)


def render(
    scenes: Scenes, cameras: Cameras, resolution: int, generator: torch.Generator, steps: int = 40
) -> torch.Tensor:
    """`[B, 4, R, R]` RGBA in [0, 1] (sRGB, straight alpha; background transparent)."""
    b = scenes.batch_size
    device = scenes.active.device
    origins, directions = camera_rays(cameras, resolution)
    t, hit = sphere_trace(scenes, origins, directions, steps)
    points = origins + t[..., None] * directions
    normal = _normals(scenes, points)
    attrs = materials(scenes, points)
    albedo, metal, rough, alpha = attrs[..., :3], attrs[..., 3:4], attrs[..., 4:5], attrs[..., 5]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=generator, device=device)

    # A key light from the camera's side of the upper hemisphere, ambient, exposure.
    light = torch.nn.functional.normalize(
        -cameras.rotation[:, 1] * uniform(0.3, 1.0, 1)
        + cameras.rotation[:, 0] * uniform(-1.0, 1.0, 1)
        + torch.tensor([0.0, 0.0, 1.0], device=device) * uniform(0.2, 1.2, 1),
        dim=-1,
    )[:, None]
    intensity = uniform(0.9, 1.6, 1, 1)
    ambient = uniform(0.12, 0.35, 1, 1)
    view = -directions
    n_dot_l = (normal * light).sum(-1, keepdim=True).clamp_min(0)
    half = torch.nn.functional.normalize(light + view, dim=-1)
    shininess = (2 / (rough**4 + 1e-3) - 2).clamp(1, 2000)
    f0 = 0.04 + (albedo - 0.04) * metal
    spec = (
        f0 * (shininess + 2) / 8 * (normal * half).sum(-1, keepdim=True).clamp_min(0) ** shininess * n_dot_l
    )
    reflect = directions - 2 * (directions * normal).sum(-1, keepdim=True) * normal
    sky = torch.lerp(
        torch.tensor([0.25, 0.22, 0.2], device=device),
        torch.tensor([0.9, 0.95, 1.0], device=device),
        (reflect[..., 2:3] * 0.5 + 0.5),
    )
    occlusion = (signed_distance(scenes, points + 0.04 * normal) / 0.04).clamp(0.3, 1.0)[..., None]
    diffuse = albedo * (1 - metal) * (ambient * occlusion + intensity * n_dot_l)
    env = f0 * sky * (1 - 0.7 * rough) * occlusion
    color = (diffuse + intensity * spec + env) * uniform(0.8, 1.3, 1, 1)
    srgb = color.clamp(0, 1) ** (1 / 2.2)
    rgba = torch.cat([srgb, alpha[..., None]], dim=-1) * hit[..., None]
    return rgba.reshape(b, resolution, resolution, 4).permute(0, 3, 1, 2).contiguous()
