"""Random procedural objects as batched signed distance functions, with PBR materials.

A scene is up to `MAX_PARTS` parts combined in order by union, smooth union or difference. Each part is one of
four families, each with continuous parameters that cover many shapes:

- `BOX`: rounded box (cubes, plates, bars, pills, near-spheres);
- `REVOLVED`: a solid of revolution about its local z axis with a random profile (cylinders, cones, vases,
  rods, discs);
- `TORUS`: rings and handles;
- `EXTRUDED`: a regular polygon or a star extruded along local z (prisms, gears, stars).

Everything is a tensor with a leading batch dimension, on any device; no Python loop runs over samples. The
distances are Lipschitz-bounded approximations (exact for boxes and tori), good for sphere tracing and for
soft occupancy targets. The world frame is TRELLIS.2's: Z up, the object inside `[-0.5, 0.5]^3`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

MAX_PARTS = 7
BOX, REVOLVED, TORUS, EXTRUDED = range(4)
UNION, SMOOTH_UNION, SUBTRACT = range(3)
SOLID, STRIPES, WAVES, CHECKER = range(4)
OBJECT_HALF_EXTENT = 0.45  # objects are scaled so that their largest half extent is this


@dataclass(frozen=True)
class SceneRules:
    """How random objects are composed. Training and evaluation use different rules (and seeds)."""

    min_parts: int = 1
    max_parts: int = 5
    family_weights: tuple[float, float, float, float] = (0.35, 0.35, 0.12, 0.18)
    smooth_union_p: float = 0.3
    subtract_p: float = 0.15  # each part after the first may cut a hole instead of adding material
    symmetric_p: float = 0.5  # mirror-symmetric about the x = 0 plane
    upright_p: float = 0.7  # parts rotate about z only (standing objects); others get any rotation
    thin_p: float = 0.15  # plates, sheets and rods
    transparent_p: float = 0.08
    metal_p: float = 0.25
    pattern_weights: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15)
    spread: float = 0.3  # part centres lie in a ball of this radius before normalisation


TRAIN_RULES = SceneRules()
# Held-out composition: more parts, more holes, other family mix, rarer symmetry.
EVAL_RULES = SceneRules(
    min_parts=2,
    max_parts=7,
    family_weights=(0.25, 0.3, 0.2, 0.25),
    smooth_union_p=0.45,
    subtract_p=0.25,
    symmetric_p=0.35,
    upright_p=0.6,
    thin_p=0.2,
    spread=0.35,
)


@dataclass
class Scenes:
    """A batch of `B` objects with `K = MAX_PARTS` part slots (unused slots have `active = False`)."""

    active: torch.Tensor  # [B, K] bool
    family: torch.Tensor  # [B, K] long
    op: torch.Tensor  # [B, K] long
    centre: torch.Tensor  # [B, K, 3]
    rotation: torch.Tensor  # [B, K, 3, 3], local -> world
    size: torch.Tensor  # [B, K, 3] lengths
    shape: torch.Tensor  # [B, K, 4] dimensionless family parameters
    blend: torch.Tensor  # [B, K] smooth-union radius (length)
    symmetric: torch.Tensor  # [B] bool
    color_a: torch.Tensor  # [B, K, 3] linear base colour
    color_b: torch.Tensor  # [B, K, 3] second pattern colour
    metallic: torch.Tensor  # [B, K]
    roughness: torch.Tensor  # [B, K]
    alpha: torch.Tensor  # [B, K]
    pattern: torch.Tensor  # [B, K] long
    pattern_freq: torch.Tensor  # [B, K]
    pattern_dir: torch.Tensor  # [B, K, 3] unit

    @property
    def batch_size(self) -> int:
        return self.active.shape[0]

    def select(self, index: torch.Tensor) -> Scenes:
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _rand(generator: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=device)


def _uniform(generator, lo: float, hi: float, *shape: int, device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(generator, *shape, device=device)


def _choice(generator, weights, *shape: int, device) -> torch.Tensor:
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    n = math.prod(shape)
    return torch.multinomial(w.expand(n, -1), 1, replacement=True, generator=generator).reshape(shape)


def _random_rotation(generator, upright: torch.Tensor, device) -> torch.Tensor:
    """[..., 3, 3]: a yaw about z where `upright`, else a uniformly random rotation (from a quaternion)."""
    shape = upright.shape
    q = torch.randn(*shape, 4, generator=generator, device=device)
    yaw = _uniform(generator, 0.0, 2 * math.pi, *shape, device=device)
    q_up = torch.stack(
        [torch.cos(yaw / 2), torch.zeros_like(yaw), torch.zeros_like(yaw), torch.sin(yaw / 2)], -1
    )
    q = torch.where(upright[..., None], q_up, q)
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _random_colors(generator, *shape: int, device) -> torch.Tensor:
    """Linear-light colours from random hue, saturation and value (some greys, some saturated)."""
    h = _rand(generator, *shape, device=device)
    s = _rand(generator, *shape, device=device) ** 0.7 * (_rand(generator, *shape, device=device) > 0.15)
    v = _uniform(generator, 0.15, 1.0, *shape, device=device)
    k = torch.arange(3, device=device) * (1 / 3)
    rgb = v[..., None] * (
        1 - s[..., None] * (1 - (torch.abs(((h[..., None] + k) % 1) * 6 - 3) - 1).clamp(0, 1))
    )
    return rgb.clamp(0, 1) ** 2.2


def sample_scenes(
    batch: int,
    generator: torch.Generator,
    rules: SceneRules = TRAIN_RULES,
    device: torch.device | str = "cpu",
) -> Scenes:
    """`batch` random objects, normalised so that each fits `[-0.45, 0.45]^3` (largest extent touching)."""
    device = torch.device(device)
    k = MAX_PARTS
    count = torch.randint(
        rules.min_parts, rules.max_parts + 1, (batch, 1), generator=generator, device=device
    )
    active = torch.arange(k, device=device)[None] < count
    family = _choice(generator, rules.family_weights, batch, k, device=device)
    op_roll = _rand(generator, batch, k, device=device)
    op = torch.full((batch, k), UNION, dtype=torch.long, device=device)
    op[op_roll < rules.smooth_union_p] = SMOOTH_UNION
    op[op_roll > 1 - rules.subtract_p] = SUBTRACT
    op[:, 0] = UNION
    # Parts: the first is large and central, later ones smaller and around it.
    scale = torch.where(
        torch.arange(k, device=device)[None] == 0,
        1.0,
        _uniform(generator, 0.35, 0.8, batch, k, device=device),
    )
    size = _uniform(generator, 0.12, 0.35, batch, k, 3, device=device) * scale[..., None]
    thin = _rand(generator, batch, k, device=device) < rules.thin_p
    thin_axis = torch.randint(0, 3, (batch, k), generator=generator, device=device)
    thin_size = _uniform(generator, 0.012, 0.03, batch, k, device=device)
    size = torch.where(
        thin[..., None] & (torch.arange(3, device=device) == thin_axis[..., None]), thin_size[..., None], size
    )
    direction = torch.nn.functional.normalize(
        torch.randn(batch, k, 3, generator=generator, device=device), dim=-1
    )
    centre = direction * rules.spread * _rand(generator, batch, k, 1, device=device) ** 0.5
    centre[:, 0] *= 0.3
    holes = op == SUBTRACT  # holes are rods or bars through the object
    family = torch.where(holes & (family == TORUS), REVOLVED, family)
    size = torch.where(holes[..., None], size * torch.tensor([0.45, 0.45, 3.0], device=device), size)
    upright = _rand(generator, batch, k, device=device) < rules.upright_p
    rotation = _random_rotation(generator, upright, device)
    shape = _rand(generator, batch, k, 4, device=device)
    blend = _uniform(generator, 0.03, 0.12, batch, k, device=device)
    symmetric = _rand(generator, batch, device=device) < rules.symmetric_p
    # Materials.
    pattern = _choice(generator, rules.pattern_weights, batch, k, device=device)
    metal = _rand(generator, batch, k, device=device) < rules.metal_p
    transparent = _rand(generator, batch, k, device=device) < rules.transparent_p
    transparent[:, 0] = False  # the main part is opaque, so every object has a solid silhouette
    scenes = Scenes(
        active=active,
        family=family,
        op=op,
        centre=centre,
        rotation=rotation,
        size=size,
        shape=shape,
        blend=blend,
        symmetric=symmetric,
        color_a=_random_colors(generator, batch, k, device=device),
        color_b=_random_colors(generator, batch, k, device=device),
        metallic=torch.where(
            metal,
            _uniform(generator, 0.7, 1.0, batch, k, device=device),
            _uniform(generator, 0.0, 0.15, batch, k, device=device),
        ),
        roughness=_uniform(generator, 0.1, 1.0, batch, k, device=device),
        alpha=torch.where(
            transparent,
            _uniform(generator, 0.35, 0.8, batch, k, device=device),
            torch.ones(batch, k, device=device),
        ),
        pattern=pattern,
        pattern_freq=_uniform(generator, 6.0, 30.0, batch, k, device=device),
        pattern_dir=torch.nn.functional.normalize(
            torch.randn(batch, k, 3, generator=generator, device=device), dim=-1
        ),
    )
    return normalise(scenes)


def _length(*parts: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(sum(p * p for p in parts) + 1e-12)


def part_distances(scenes: Scenes, points: torch.Tensor) -> torch.Tensor:
    """Signed distance of every part: `points [B, N, 3]` world -> `[B, N, K]`."""
    p = points
    p = torch.where(scenes.symmetric[:, None, None] & (torch.arange(3, device=p.device) == 0), p.abs(), p)
    # Local coordinates q = R^T (p - c): [B, N, K, 3].
    q = torch.einsum("bkji,bnkj->bnki", scenes.rotation, p[:, :, None, :] - scenes.centre[:, None])
    size = scenes.size[:, None]  # [B, 1, K, 3]
    s = scenes.shape[:, None]
    qx, qy, qz = q.unbind(-1)
    sx, sy, sz = size.unbind(-1)
    radial = _length(qx, qy)
    # Rounded box.
    rounding = s[..., 0] * 0.9 * size.min(dim=-1).values
    e = q.abs() - (size - rounding[..., None])
    box = _length(*e.clamp_min(0).unbind(-1)) + e.max(dim=-1).values.clamp_max(0) - rounding
    # Solid of revolution: radius profile r(t) over t = z / h in [-1, 1].
    t = (qz / sz).clamp(-1, 1)
    profile = sx * (
        1
        + (s[..., 0] - 0.5) * 1.2 * t
        + (s[..., 1] - 0.5) * 1.2 * t * t
        + (s[..., 2] - 0.5) * 0.6 * torch.sin(3 * math.pi * t + 6 * s[..., 3])
    )
    profile = profile.clamp_min(0.08 * sx)
    revolved = torch.maximum((radial - profile) * 0.7, qz.abs() - sz)
    # Torus in the local xy plane.
    minor = sx * (0.12 + 0.3 * s[..., 0])
    torus = _length(radial - sx, qz) - minor
    # Extruded regular polygon (3-8 sides) or star.
    sides = torch.floor(3 + 6 * s[..., 1]).clamp_max(8)
    angle = torch.atan2(qy, qx)
    sector = 2 * math.pi / sides
    local = torch.remainder(angle + sector / 2, sector) - sector / 2
    polygon = radial * torch.cos(local) - sx * torch.cos(math.pi / sides)
    amp = 0.15 + 0.3 * s[..., 0]
    star = (radial - sx * (1 + amp * torch.cos(sides * angle)) / (1 + amp)) * 0.6
    flat = torch.where(s[..., 2] > 0.5, star, polygon)
    extruded = torch.maximum(flat, qz.abs() - sz)
    family = scenes.family[:, None]
    d = torch.where(family == BOX, box, revolved)
    d = torch.where(family == TORUS, torus, d)
    return torch.where(family == EXTRUDED, extruded, d)


def combine(scenes: Scenes, parts: torch.Tensor) -> torch.Tensor:
    """The object's distance from its parts' `[B, N, K]` distances, applying each part's operation in order."""
    big = torch.full_like(parts[..., 0], 1e3)
    d = big
    for k in range(parts.shape[-1]):
        dk = torch.where(scenes.active[:, k, None], parts[..., k], big)
        op = scenes.op[:, k, None]
        radius = scenes.blend[:, k, None]
        h = (radius - (d - dk).abs()).clamp_min(0) / radius
        smooth = torch.minimum(d, dk) - h * h * radius * 0.25
        subtract = torch.where(scenes.active[:, k, None], torch.maximum(d, -dk), d)
        d = torch.where(op == UNION, torch.minimum(d, dk), torch.where(op == SMOOTH_UNION, smooth, subtract))
    return d


def signed_distance(scenes: Scenes, points: torch.Tensor) -> torch.Tensor:
    """`points [B, N, 3]` in the world frame -> `[B, N]` signed distance (negative inside)."""
    return combine(scenes, part_distances(scenes, points))


def materials(scenes: Scenes, points: torch.Tensor) -> torch.Tensor:
    """PBR attributes `[B, N, 6]` (linear base colour, metallic, roughness, alpha) of the nearest part."""
    parts = part_distances(scenes, points)
    far = torch.where(scenes.active[:, None], parts.abs(), torch.full_like(parts, 1e3))
    nearest = far.argmin(dim=-1)  # [B, N]

    def pick(value: torch.Tensor) -> torch.Tensor:  # [B, K, ...] -> [B, N, ...]
        index = nearest.reshape(*nearest.shape, *([1] * (value.dim() - 2)))
        return torch.gather(value, 1, index.expand(-1, -1, *value.shape[2:]))

    phase = (points * pick(scenes.pattern_dir)).sum(-1) * pick(scenes.pattern_freq)
    pattern = pick(scenes.pattern)
    stripes = torch.sin(phase) > 0
    waves = torch.sin(phase + 2.5 * torch.sin(1.7 * phase + points[..., 2] * 9.0)) > 0.3
    cell = torch.floor(points * pick(scenes.pattern_freq)[..., None] / 3).sum(-1)
    checker = torch.remainder(cell, 2) > 0.5
    use_b = torch.where(pattern == STRIPES, stripes, torch.where(pattern == WAVES, waves, checker))
    use_b = use_b & (pattern != SOLID)
    color = torch.where(use_b[..., None], pick(scenes.color_b), pick(scenes.color_a))
    return torch.cat(
        [
            color,
            pick(scenes.metallic)[..., None],
            pick(scenes.roughness)[..., None],
            pick(scenes.alpha)[..., None],
        ],
        dim=-1,
    )


def _grid_points(resolution: int, half: float, device) -> torch.Tensor:
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution * 2 * half - half
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def occupied_bounds(
    scenes: Scenes, resolution: int = 32, half: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-aligned bounds `([B, 3] min, [B, 3] max)` of the inside, measured on a coarse grid."""
    pts = _grid_points(resolution, half, scenes.active.device)
    inside = signed_distance(scenes, pts.expand(scenes.batch_size, -1, -1)) < 0  # [B, N]
    cell = 2 * half / resolution
    big = torch.tensor(1e3, device=pts.device)
    lo = torch.where(inside[..., None], pts, big).min(dim=1).values - cell / 2
    hi = torch.where(inside[..., None], pts, -big).max(dim=1).values + cell / 2
    empty = ~inside.any(dim=1)
    lo = torch.where(empty[:, None], -0.1, lo)
    hi = torch.where(empty[:, None], 0.1, hi)
    return lo, hi


def normalise(scenes: Scenes) -> Scenes:
    """Centre each object's bounds at the origin and scale its largest half extent to `OBJECT_HALF_EXTENT`."""
    lo, hi = occupied_bounds(scenes)
    centre = (lo + hi) / 2
    centre = torch.where(scenes.symmetric[:, None] & (torch.arange(3, device=lo.device) == 0), 0.0, centre)
    half = torch.maximum((hi - centre).abs(), (lo - centre).abs()).max(dim=1).values.clamp_min(1e-3)
    factor = OBJECT_HALF_EXTENT / half
    # A mirrored object stays mirrored about x = 0, so its x offset is zero (set above).
    scenes.centre = (scenes.centre - centre[:, None]) * factor[:, None, None]
    scenes.size = scenes.size * factor[:, None, None]
    scenes.blend = scenes.blend * factor[:, None]
    return scenes
