"""From the teacher's object frame to the student's grid: the camera pose of the input image, found from its
silhouette, and the mapping of the teacher's targets through it.

TRELLIS.2 makes its object in its own frame (the cube `[-0.5, 0.5]^3`, Z up: `fresnel.frames` "world"); the
student's grid is camera-aligned ("grid": x = image columns, z = image rows upwards, y = depth, the crop
square spanning `[-CROP_HALF, CROP_HALF]` in x and z). A `Pose` is the similarity between the two:

    p_grid = scale * (R p_teacher - centre),   R = fresnel.frames.view_rotation(yaw, elevation)

`fit_pose` finds it for one view: over yaw (all round) and elevation (the student's training range,
`fresnel.data.render.TRAIN_CAMERAS`), the teacher's solid is seen from the camera orthographically, its
projected bounding box fitted to the crop the way `crop_to_object` frames an object (longer side to
`2 * CROP_HALF`, centred), and the pose whose silhouette best overlaps the image's alpha wins; where turns
tie (front and back of a symmetric object), the one whose visible base colour best matches the image's
colours. The depth centre is the teacher's bounding-box centre. `student_targets` and `student_noise` then
resample the teacher's volumes and its structure noise into the grid of a batch of poses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..data.batches import SOFT_OCCUPANCY_VOXELS, grid_centres
from ..data.render import TRAIN_CAMERAS
from ..frames import CROP_HALF, view_rotation

FIT_PIXELS = 32  # silhouettes are compared at this many pixels a side
FIT_DEPTH = 24  # samples along each ray through the grid's depth
YAW_STEP_DEG = 15.0
ELEVATION_STEP_DEG = 5.0
REFINE_STEP_DEG = 2.5
REFINE_STEPS = 3  # refined turns on each side of the best coarse one
TIE_IOU = 0.02  # silhouettes this close are told apart by colour
POSE_CHUNK = 16  # poses per batched silhouette
CAMERA_DISTANCES = (1.5, 2.0, 2.75, 4.0, math.inf)  # from the object's centre, in teacher units
SHELL_HALF = 1.0  # voxels: the half-thickness of the solid an open surface becomes (`with_body`)


@dataclass(frozen=True)
class Pose:
    """The similarity from the teacher's frame to the student's grid (module docstring); angles in radians."""

    yaw: float
    elevation: float
    scale: float
    centre: tuple[float, float, float]
    distance: float = math.inf  # the camera's distance from the object's centre (teacher units)
    iou: float = 1.0  # the silhouette overlap it was chosen with

    def rotation(self) -> torch.Tensor:
        return view_rotation(torch.tensor([self.yaw]), torch.tensor([self.elevation]))[0]

    def to_grid(self, points: torch.Tensor) -> torch.Tensor:
        """Teacher-frame points `[N, 3]` -> grid points."""
        rotation = self.rotation().to(points)
        return self.scale * (points @ rotation.T - torch.tensor(self.centre).to(points))

    def to_teacher(self, points: torch.Tensor) -> torch.Tensor:
        """Grid points `[N, 3]` -> teacher-frame points."""
        rotation = self.rotation().to(points)
        return (points / self.scale + torch.tensor(self.centre).to(points)) @ rotation

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Pose:
        return cls(**{**data, "centre": tuple(data["centre"])})


@dataclass
class PoseBatch:
    """Poses as tensors for batched resampling: rotation `[B, 3, 3]`, scale `[B]`, centre `[B, 3]`."""

    rotation: torch.Tensor
    scale: torch.Tensor
    centre: torch.Tensor
    elevation: torch.Tensor

    @classmethod
    def of(cls, poses: list[Pose], device: torch.device | str = "cpu") -> PoseBatch:
        yaw = torch.tensor([p.yaw for p in poses])
        elevation = torch.tensor([p.elevation for p in poses])
        return cls(
            view_rotation(yaw, elevation).to(device),
            torch.tensor([p.scale for p in poses]).to(device),
            torch.tensor([p.centre for p in poses]).to(device),
            elevation.to(device),
        )

    def to_teacher(self, points: torch.Tensor) -> torch.Tensor:
        """Grid points `[N, 3]` (shared) -> teacher-frame points `[B, N, 3]`."""
        local = points[None] / self.scale[:, None, None] + self.centre[:, None]
        return local @ self.rotation  # rows: R^T v


def _volume_grid(points: torch.Tensor) -> torch.Tensor:
    """Teacher-frame points `[..., 3]` as `grid_sample` coordinates of a `[x, y, z]`-indexed volume."""
    return (points * 2).flip(-1)


def _fit_lattice(device: torch.device) -> torch.Tensor:
    """`[FIT_PIXELS (rows) * FIT_PIXELS (columns) * FIT_DEPTH, 3]` grid points behind the crop's pixels."""
    t = (torch.arange(FIT_PIXELS, device=device) + 0.5) / FIT_PIXELS * 2 - 1
    x, z = t * CROP_HALF, -t * CROP_HALF  # columns left to right, rows top to bottom
    y = (torch.arange(FIT_DEPTH, device=device) + 0.5) / FIT_DEPTH - 0.5
    zz, xx, yy = torch.meshgrid(z, x, y, indexing="ij")
    return torch.stack([xx, yy, zz], -1).reshape(-1, 3)


@dataclass
class _Views:
    """Candidate cameras for one teacher object: rotations `[P, 3, 3]`, distances `[P]` (from the object's
    centre; inf: orthographic) and the similarity each one's crop gives (scale `[P]`, centre `[P, 3]`)."""

    rotation: torch.Tensor
    distance: torch.Tensor
    scale: torch.Tensor
    centre: torch.Tensor

    def __getitem__(self, index) -> _Views:
        return _Views(self.rotation[index], self.distance[index], self.scale[index], self.centre[index])


def _perspective(distance: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """How much larger than at the object's centre a point `depth` nearer the camera looks."""
    return torch.where(torch.isinf(distance), torch.ones_like(depth), distance / (depth + distance))


def _views(points, box_centre, yaw, elevation, distance) -> _Views:
    """The cameras `(yaw, elevation, distance)` looking at `box_centre`, each with the crop similarity that
    frames the projection of `points` as `crop_to_object` frames an object (longer side to `2 * CROP_HALF`)."""
    rotation = view_rotation(yaw, elevation)
    relative = (points - box_centre)[None] @ rotation.transpose(1, 2)  # [P, N, 3], view axes
    k = _perspective(distance[:, None], relative[..., 1])
    margin = 0.0  # the crop box holds the pixels mostly covered (`crop_to_object`): the voxel centres
    u, w = relative[..., 0] * k, relative[..., 2] * k
    lo_u, hi_u = u.min(1).values - margin, u.max(1).values + margin
    lo_w, hi_w = w.min(1).values - margin, w.max(1).values + margin
    half = torch.maximum(hi_u - lo_u, hi_w - lo_w) / 2
    offset = torch.stack([(lo_u + hi_u) / 2, torch.zeros_like(half), (lo_w + hi_w) / 2], -1)
    centre = (box_centre[None, None] @ rotation.transpose(1, 2))[:, 0] + offset
    return _Views(rotation, distance, CROP_HALF / half, centre)


def _rays(volume: torch.Tensor, views: _Views, box_centre: torch.Tensor) -> torch.Tensor:
    """`volume [C, G, G, G]` (teacher frame) sampled along the camera rays behind the crop's pixels:
    `[P, C, rows, cols, depth]` (depth from the camera's side)."""
    lattice = _fit_lattice(volume.device)
    box_view = (box_centre[None, None] @ views.rotation.transpose(1, 2))[:, 0]  # [P, 3]
    image = lattice[None] / views.scale[:, None, None] + views.centre[:, None] - box_view[:, None]
    depth = image[..., 1]
    spread = 1 / _perspective(views.distance[:, None], depth)  # rays widen away from the camera
    relative = torch.stack([image[..., 0] * spread, depth, image[..., 2] * spread], -1)
    teacher = relative @ views.rotation + box_centre
    teacher = teacher.reshape(-1, FIT_PIXELS, FIT_PIXELS, FIT_DEPTH, 3)
    batch = volume[None].expand(teacher.shape[0], *volume.shape)
    return F.grid_sample(
        batch, _volume_grid(teacher), mode="bilinear", padding_mode="zeros", align_corners=False
    )


class _Fit:
    """One view's silhouette fit: the teacher's solid, its voxel centres, the image's mask and colours."""

    def __init__(self, crop: torch.Tensor, solid: torch.Tensor, base_color: torch.Tensor | None) -> None:
        self.volume = solid.float()
        interior = -F.max_pool3d(-self.volume[None, None], 3, 1, 1)[0, 0] > 0.5
        boundary = solid & ~interior  # the projected extent of a solid is that of its boundary voxels
        self.points = grid_centres(solid.shape[0], solid.device)[boundary.reshape(-1)]
        if self.points.shape[0] == 0:
            raise ValueError("the teacher's object is empty")
        self.box_centre = (self.points.min(0).values + self.points.max(0).values) / 2
        self.mask, self.image_rgb = image_masks(crop.to(solid.device))
        self.colors = None if base_color is None else base_color.float().to(solid.device)

    def views(self, yaw: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor) -> _Views:
        return _views(self.points, self.box_centre, yaw, elevation, distance)

    def ious(self, views: _Views) -> torch.Tensor:
        """Silhouette IoU with the image's mask of every candidate camera."""
        out = []
        for start in range(0, views.scale.shape[0], POSE_CHUNK):
            chunk = views[start : start + POSE_CHUNK]
            seen = _rays(self.volume[None], chunk, self.box_centre)[:, 0].amax(-1) > 0.5
            inter = (seen & self.mask).sum((1, 2)).float()
            out.append(inter / (seen | self.mask).sum((1, 2)).float().clamp_min(1))
        return torch.cat(out)

    def color_error(self, view: _Views) -> float:
        """Mean absolute difference of the teacher's nearest visible base colour and the image's colour, on
        the pixels both cover (inf without colours)."""
        if self.colors is None:
            return math.inf
        occupancy = _rays(self.volume[None], view, self.box_centre)[0, 0] > 0.5  # [rows, cols, depth]
        values = _rays(self.colors, view, self.box_centre)[0]  # [3, rows, cols, depth]
        first = occupancy.float().argmax(-1)  # the first sample inside, from the camera's side
        front = values.gather(-1, first[None, ..., None].expand(3, -1, -1, 1))[..., 0]
        both = occupancy.any(-1) & self.mask
        if not bool(both.any()):
            return math.inf
        return float((front - self.image_rgb).abs().mean(0)[both].mean())


def image_masks(crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(mask [P, P] bool, straight sRGB [3, P, P])` of a crop `[4, S, S]` (premultiplied), at `FIT_PIXELS`."""
    small = F.adaptive_avg_pool2d(crop[None].float(), FIT_PIXELS)[0]
    alpha = small[3]
    return alpha > 0.5, small[:3] / alpha.clamp_min(1e-3)


def fit_pose(crop: torch.Tensor, solid: torch.Tensor, base_color: torch.Tensor | None = None) -> Pose:
    """The pose of the teacher's object in the view of `crop [4, S, S]` (the student's input): `solid
    [G, G, G]` is the teacher's inside (bool), `base_color [3, G, G, G]` its sRGB colour (module docstring).

    Coarse turns (yaw x elevation) at a typical camera distance, the colour among near-equal silhouettes,
    then the camera distance, then finer turns around the best."""
    fit = _Fit(crop, solid, base_color)
    lo, hi = TRAIN_CAMERAS.elevation
    grid = torch.meshgrid(
        torch.arange(0.0, 360.0, YAW_STEP_DEG), torch.arange(lo, hi + 1e-6, ELEVATION_STEP_DEG), indexing="ij"
    )
    yaw, elevation = (torch.deg2rad(g.reshape(-1)) for g in grid)
    typical = torch.full_like(yaw, CAMERA_DISTANCES[len(CAMERA_DISTANCES) // 2])
    coarse = fit.views(yaw, elevation, typical)
    ious = fit.ious(coarse)
    ties = (ious >= ious.max() - TIE_IOU).nonzero().squeeze(1).tolist()
    best = min(ties, key=lambda i: (fit.color_error(coarse[i : i + 1]), -float(ious[i])))
    distances = torch.tensor(CAMERA_DISTANCES)
    far = fit.views(yaw[best].expand(len(distances)), elevation[best].expand(len(distances)), distances)
    distance = distances[int(fit.ious(far).argmax())]
    offsets = torch.deg2rad(torch.arange(-REFINE_STEPS, REFINE_STEPS + 1) * REFINE_STEP_DEG)
    near = torch.meshgrid(yaw[best] + offsets, elevation[best] + offsets, indexing="ij")
    near_yaw, near_elevation = (
        near[0].reshape(-1),
        near[1].reshape(-1).clamp(math.radians(lo), math.radians(hi)),
    )
    fine = fit.views(near_yaw, near_elevation, distance.expand(near_yaw.shape[0]))
    fine_ious = fit.ious(fine)
    chosen = int(fine_ious.argmax())
    view = fine[chosen]
    return Pose(
        float(near_yaw[chosen]) % (2 * math.pi),
        float(near_elevation[chosen]),
        float(view.scale),
        tuple(view.centre.tolist()),
        float(distance),
        float(fine_ious[chosen]),
    )


def with_body(distance: torch.Tensor) -> torch.Tensor:
    """A signed distance `[..., G, G, G]` (in voxels) in which a surface that encloses nothing nearby (no
    negative voxel within two: a sheet, or a part thinner than a voxel) becomes a solid `SHELL_HALF` voxels
    either side of it, blending back into the distance by `2 * SHELL_HALF`; closed surfaces keep theirs."""
    grid = distance.reshape(-1, 1, *distance.shape[-3:])
    enclosed = (-F.max_pool3d(-grid, 5, 1, 2) < 0).reshape(distance.shape)
    unsigned = distance.abs()
    shell = unsigned - SHELL_HALF * (2 - unsigned / SHELL_HALF).clamp(0, 1)
    return torch.where(enclosed, distance, shell)


def student_targets(
    distance: torch.Tensor, attributes: torch.Tensor, poses: PoseBatch, grid: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's `distance [B, T, T, T]` (signed, in teacher voxels) and `attributes [B, 6, T, T, T]`
    resampled into the student's `grid^3` through `poses`: `(occupancy, distance [B, G, G, G],
    attributes [B, 6, G, G, G])`, the distance in student voxels and the soft occupancy made from it as
    `fresnel.data.batches` makes the procedural targets; open surfaces (sheets) and parts thinner than the
    student's voxels get a body it can learn (`with_body`)."""
    b, teacher = distance.shape[0], distance.shape[-1]
    points = poses.to_teacher(grid_centres(grid, distance.device)).reshape(b, grid, grid, grid, 3)
    volumes = torch.cat([distance[:, None].float(), attributes.float()], 1)
    values = F.grid_sample(
        volumes, _volume_grid(points), mode="bilinear", padding_mode="border", align_corners=False
    )
    voxels = values[:, 0] * poses.scale[:, None, None, None] * grid / teacher
    voxels = with_body(voxels)
    occupancy = torch.sigmoid(-voxels / SOFT_OCCUPANCY_VOXELS)
    return occupancy, voxels, values[:, 1:]


def student_noise(noise: torch.Tensor, poses: PoseBatch) -> torch.Tensor:
    """The teacher's structure noise `[B, C, R, R, R]` (its frame) on the student's noise grid through `poses`:
    each student cell takes the value of the teacher cell its centre falls in (nearest: the values stay the
    seed's own Gaussian draws); a cell outside the teacher's cube keeps the seed's value at its own index."""
    b, c, r = noise.shape[0], noise.shape[1], noise.shape[-1]
    points = poses.to_teacher(grid_centres(r, noise.device))  # [B, R^3, 3]
    index = torch.floor((points + 0.5) * r).long()
    inside = ((index >= 0) & (index < r)).all(-1)
    own = torch.arange(r**3, device=noise.device).expand(b, -1)
    flat = torch.where(
        inside, (index.clamp(0, r - 1) * torch.tensor([r * r, r, 1], device=noise.device)).sum(-1), own
    )
    gathered = noise.reshape(b, c, -1).gather(2, flat[:, None].expand(-1, c, -1))
    return gathered.reshape(noise.shape)
