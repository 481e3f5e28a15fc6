"""Frame-free shape scores for Fresnel on held-out procedural objects, against two baselines that need no learning.

The engine's output is upright (Z up) and fitted to the unit cube, but its yaw relative to the true object is
arbitrary, and a single image cannot tell an object from its mirror image. Every comparison therefore
happens in an *aligned normalised frame*:

1. each shape's surface is sampled (`sample_surface`) and normalised by its bounding box
   (`normalise_points`: centred, largest side 1);
2. the prediction is turned about the vertical axis and optionally mirrored (x -> -x), re-normalised, and the
   turn with the lowest Chamfer distance wins (`frame_free_scores`: coarse every 15 degrees, refined in
   2.5 degree steps);
3. Chamfer-L1 and the F-score come from the aligned point sets; the occupancy IoU from a 64^3 lattice of the
   aligned cube mapped back into each shape's own frame, where the shape answers "inside?"
   (`occupancy_iou`); the base-colour error compares Fresnel's colour at its surface points with the true
   colour at the nearest true surface point.

Shapes are `Shape`s: a mesh, an inside test and optionally a colour, all in the shape's own frame. The truth
(`truth_shape`) lives in the world frame, Fresnel (`fresnel_shape`) in the engine's output frame, the
baselines (`sphere_shape`, `prism_shape`) in frames of their own. `evaluate` runs the whole loop on objects
made with `EVAL_RULES` / `EVAL_CAMERAS` and a seed other than training's.

Beside the scores, `registered_scores` diagnoses Fresnel's raw fields against the truth placed by the true
camera (no normalisation, no turn search): how large the prediction is against the truth, and how much of the
surface the camera sees it finds, against the surface it cannot see.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial import cKDTree

from .data.batches import SOFT_OCCUPANCY_VOXELS, Batch, grid_centres, make_batch
from .data.render import EVAL_CAMERAS, CameraRules, Cameras, sphere_trace
from .data.scenes import EVAL_RULES, SceneRules, Scenes, materials, signed_distance
from .frames import CROP_HALF, elevation_rotation
from .network import FresnelOutput
from .surface import LEVEL, fields_to_asset, sample_fields, upright_fields

if TYPE_CHECKING:
    from .pipeline import FresnelPipeline

EVAL_SEED = 1234  # training draws its objects from seed 0
F_THRESHOLD = 0.05  # F-score distance threshold, in units of the object's largest side
SURFACE_POINTS = 10_000
COLOR_POINTS = 40_000  # true surface points whose colours the predicted colours are compared with
SEARCH_POINTS = 2048  # points per set during the rotation search (the final scores use all of them)
COARSE_STEP_DEG = 15.0
FINE_STEP_DEG = 2.5
FINE_SPAN_DEG = 7.5
TIE_TOLERANCE = 0.05  # turns within 5% of the best Chamfer are symmetries; colour picks among them
IOU_RESOLUTION = 64
IOU_MARGIN = 0.03  # the IoU lattice covers the aligned cube [-0.5 - m, 0.5 + m]^3
TRUTH_RESOLUTION = 96
PRISM_RESOLUTION = 64
SPHERE_RADIUS = 0.45
CHUNK = 65_536  # points per call of an inside test
VISIBILITY_STEPS = 80  # sphere-tracing steps of the visibility test (the render uses 40)
METHODS = ("fresnel", "sphere", "prism")
METRICS = ("chamfer_l1", "f_score", "iou", "color_error")
LOWER_IS_BETTER = {"chamfer_l1": True, "f_score": False, "iou": False, "color_error": True}
DIAGNOSTICS = (  # `registered_scores`: Fresnel's raw fields against the truth placed by the true camera
    "f_score",
    "precision",
    "recall",
    "extent_ratio",
    "visible_recall",
    "hidden_recall",
    "visible_share",
    "depth_shift_cells",
    "f_score_unshifted",
)
DEPTH_SEARCH_CELLS = 8  # the registered diagnostics forgive a shift along the viewing axis of this many cells

InsideTest = Callable[[torch.Tensor], torch.Tensor]  # points [N, 3] in the shape's frame -> [N] bool
ColorFn = Callable[[torch.Tensor], torch.Tensor]  # points [N, 3] in the shape's frame -> [N, 3] sRGB


@dataclass
class Shape:
    """A solid to score, in its own frame: a surface mesh, an inside test and (optionally) its sRGB colour."""

    vertices: torch.Tensor  # [V, 3]
    faces: torch.Tensor  # [F, 3]
    inside: InsideTest
    color: ColorFn | None = None


@dataclass
class Placement:
    """Own frame -> aligned normalised frame: `q = (rotation @ p - centre) / side`."""

    rotation: torch.Tensor  # [3, 3] orthogonal (a turn about z, perhaps with a mirror)
    centre: torch.Tensor  # [3]
    side: float

    def to_aligned(self, points: torch.Tensor) -> torch.Tensor:
        rotation, centre = self.rotation.to(points), self.centre.to(points)
        return (points @ rotation.T - centre) / self.side

    def from_aligned(self, points: torch.Tensor) -> torch.Tensor:
        rotation, centre = self.rotation.to(points), self.centre.to(points)
        return (points * self.side + centre) @ rotation


@dataclass
class FrameFreeScores:
    chamfer_l1: float
    f_score: float
    precision: float
    recall: float
    yaw_deg: float  # the turn about z applied to the prediction (after the mirror)
    mirrored: bool
    pred_placement: Placement
    true_placement: Placement
    tried: list[tuple[float, float, bool]]  # every (search Chamfer, yaw, mirrored) of the search

    def ties(self, tolerance: float = TIE_TOLERANCE) -> list[tuple[float, bool]]:
        """`(yaw, mirrored)` of the turns that fit the shape as well as the best, within `tolerance` relative
        to the best search Chamfer (the symmetries of the object that geometry cannot tell apart)."""
        best = min(c for c, _, _ in self.tried)
        return [(yaw, mirrored) for c, yaw, mirrored in self.tried if c <= best * (1 + tolerance)]


# --- surfaces and normalisation ---------------------------------------------------------------------------


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(points [n, 3], face_ids [n])`: points spread uniformly by area over the triangles, on the vertices'
    device (which must be the generator's)."""
    tri = vertices.float()[faces.long()]  # [F, 3, 3]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1) * 0.5
    if tri.shape[0] == 0 or not float(area.sum()) > 0:
        raise ValueError("cannot sample a mesh without area")
    face_ids = torch.multinomial(area, n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator, device=vertices.device)
    v = torch.rand(n, generator=generator, device=vertices.device)
    su = u.sqrt()
    weights = torch.stack([1 - su, su * (1 - v), su * v], -1)  # uniform barycentric coordinates
    points = (tri[face_ids] * weights[..., None]).sum(1)
    return points, face_ids


def bounds_placement(points: torch.Tensor, rotation: torch.Tensor | None = None) -> Placement:
    """The placement that turns `points` by `rotation` (identity by default), then centres their bounding box
    and scales its largest side to 1."""
    rotation = (
        torch.eye(3, dtype=points.dtype, device=points.device) if rotation is None else rotation.to(points)
    )
    turned = points @ rotation.T
    lo, hi = turned.min(0).values, turned.max(0).values
    side = float((hi - lo).max())
    if not side > 0:
        raise ValueError("cannot normalise points with an empty bounding box")
    return Placement(rotation, (lo + hi) / 2, side)


def normalise_points(points: torch.Tensor) -> torch.Tensor:
    """`points` centred at their bounding box's centre and scaled so that its largest side is 1."""
    return bounds_placement(points).to_aligned(points)


# --- frame-free point scores ------------------------------------------------------------------------------


def yaw_mirror(yaw_deg: float, mirrored: bool, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """`[3, 3]`: mirror x -> -x (if `mirrored`), then turn by `yaw_deg` about z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    mirror = torch.diag(torch.tensor([-1.0 if mirrored else 1.0, 1.0, 1.0], dtype=dtype))
    return turn @ mirror


def _nearest(tree: cKDTree, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(distances, indices)` of each point's nearest neighbour in `tree`."""
    distance, index = tree.query(points, workers=-1)
    return distance, index


def _subsample(points: torch.Tensor, n: int) -> torch.Tensor:
    """At most `n` of `points`, a fixed random choice (the rotation search's working set)."""
    if points.shape[0] <= n:
        return points
    index = np.random.default_rng(0).choice(points.shape[0], n, replace=False)
    return points[torch.from_numpy(index)]


def precision_recall_f(
    forward: np.ndarray, backward: np.ndarray, threshold: float
) -> tuple[float, float, float]:
    """`(precision, recall, F)` from the nearest distances prediction -> truth (`forward`) and truth ->
    prediction (`backward`): the shares within `threshold`, and F = 2PR / (P + R)."""
    precision = float((forward < threshold).mean())
    recall = float((backward < threshold).mean())
    f_score = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f_score


def frame_free_scores(
    pred_points: torch.Tensor, true_points: torch.Tensor, threshold: float = F_THRESHOLD
) -> FrameFreeScores:
    """Chamfer-L1 and F-score of two point sets, each normalised by its bounding box, after the turn about z and
    mirror of the prediction with the lowest Chamfer distance (a coarse search, then a finer one around the
    best). Chamfer-L1 is the mean of the two mean nearest-neighbour distances; F = 2PR / (P + R) with
    P the share of predicted points within `threshold` of the truth and R the other way round."""
    pred = pred_points.detach().double().cpu()
    true = true_points.detach().double().cpu()
    true_placement = bounds_placement(true)
    true_aligned = true_placement.to_aligned(true).numpy()
    true_tree = cKDTree(true_aligned)
    pred_search = _subsample(pred, SEARCH_POINTS)
    true_search = _subsample(torch.from_numpy(true_aligned), SEARCH_POINTS).numpy()
    true_search_tree = cKDTree(true_search)

    def chamfer(yaw: float, mirrored: bool) -> float:
        aligned = bounds_placement(pred, yaw_mirror(yaw, mirrored)).to_aligned(pred_search).numpy()
        forward, _ = _nearest(true_search_tree, aligned)
        backward, _ = _nearest(cKDTree(aligned), true_search)
        return float(forward.mean() + backward.mean()) / 2

    tried: list[tuple[float, float, bool]] = []  # (search Chamfer, yaw, mirrored)
    for mirrored in (False, True):
        for k in range(round(360 / COARSE_STEP_DEG)):
            tried.append((chamfer(k * COARSE_STEP_DEG, mirrored), k * COARSE_STEP_DEG, mirrored))
    _, centre_yaw, mirrored = min(tried, key=lambda t: t[0])
    steps = round(FINE_SPAN_DEG / FINE_STEP_DEG)
    for k in range(-steps, steps + 1):
        if k != 0:
            yaw = (centre_yaw + k * FINE_STEP_DEG) % 360.0
            tried.append((chamfer(yaw, mirrored), yaw, mirrored))
    _, yaw, mirrored = min(tried, key=lambda t: t[0])  # the first of equals: no turn for identical sets
    pred_placement = bounds_placement(pred, yaw_mirror(yaw, mirrored))
    pred_aligned = pred_placement.to_aligned(pred).numpy()
    forward, _ = _nearest(true_tree, pred_aligned)
    backward, _ = _nearest(cKDTree(pred_aligned), true_aligned)
    precision, recall, f_score = precision_recall_f(forward, backward, threshold)
    return FrameFreeScores(
        chamfer_l1=float(forward.mean() + backward.mean()) / 2,
        f_score=f_score,
        precision=precision,
        recall=recall,
        yaw_deg=yaw,
        mirrored=mirrored,
        pred_placement=pred_placement,
        true_placement=true_placement,
        tried=tried,
    )


# --- occupancy IoU ----------------------------------------------------------------------------------------


def aligned_lattice(resolution: int = IOU_RESOLUTION, margin: float = IOU_MARGIN) -> torch.Tensor:
    """`[R^3, 3]` cell centres of the aligned normalised cube `[-0.5 - margin, 0.5 + margin]^3`."""
    return grid_centres(resolution).double() * (1 + 2 * margin)


def aligned_occupancy(
    inside: InsideTest, placement: Placement, resolution: int = IOU_RESOLUTION, margin: float = IOU_MARGIN
) -> torch.Tensor:
    """`[R^3]` bool: the aligned lattice mapped back into the shape's frame by `placement`, tested there."""
    own = placement.from_aligned(aligned_lattice(resolution, margin)).float()
    return torch.cat([inside(chunk).reshape(-1).bool().cpu() for chunk in own.split(CHUNK)])


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean occupancies (1 when both are empty)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def occupancy_iou(
    inside_a: InsideTest,
    placement_a: Placement,
    inside_b: InsideTest,
    placement_b: Placement,
    resolution: int = IOU_RESOLUTION,
    margin: float = IOU_MARGIN,
) -> float:
    """Volume IoU of two solids on a `resolution^3` lattice of the aligned normalised cube; each solid answers
    for the lattice points mapped into its own frame by its placement."""
    return iou(
        aligned_occupancy(inside_a, placement_a, resolution, margin),
        aligned_occupancy(inside_b, placement_b, resolution, margin),
    )


# --- the shapes: truth, Fresnel, baselines ----------------------------------------------------------------


def occupancy_mesh(occupancy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(vertices, faces)` of the 0.5 level of `occupancy [G, G, G]` (values at the cell centres of
    `[-0.5, 0.5]^3`), extracted by the engine's own `fields_to_asset`."""
    blank = torch.zeros(6, 2, 2, 2, device=occupancy.device)  # the attributes play no part in a shape score
    asset = fields_to_asset(occupancy.float(), blank)
    return asset.vertices, asset.faces


def truth_shape(scenes: Scenes, index: int, resolution: int = TRUTH_RESOLUTION) -> Shape:
    """Object `index` of `scenes` in the world frame: its mesh from the signed distance on a `resolution^3`
    lattice of the world cube, inside where the distance is negative, its true sRGB base colour."""
    scene = scenes.select(torch.tensor([index], device=scenes.active.device))
    device = scene.active.device

    def sdf(points: torch.Tensor) -> torch.Tensor:
        return torch.cat([signed_distance(scene, chunk[None])[0] for chunk in points.to(device).split(CHUNK)])

    def inside(points: torch.Tensor) -> torch.Tensor:
        return sdf(points) < 0

    def color(points: torch.Tensor) -> torch.Tensor:
        out = [materials(scene, chunk[None])[0, :, :3] for chunk in points.to(device).split(CHUNK)]
        return torch.cat(out).clamp(0, 1) ** (1 / 2.2)

    distance = sdf(grid_centres(resolution, device)).reshape(resolution, resolution, resolution)
    occupancy = torch.sigmoid(-distance * resolution / SOFT_OCCUPANCY_VOXELS)
    vertices, faces = occupancy_mesh(occupancy)
    return Shape(vertices, faces, inside, color)


def fields_shape(occupancy: torch.Tensor, attributes: torch.Tensor) -> Shape:
    """The engine's asset for upright fields (`fields_to_asset`), inside where the occupancy field exceeds 0.5,
    coloured by the attribute field's base colour (channels 0:3, sRGB)."""
    asset = fields_to_asset(occupancy, attributes)
    device = occupancy.device

    def inside(points: torch.Tensor) -> torch.Tensor:
        points = points.to(device)
        in_cube = (points.abs() <= 0.5).all(dim=-1)
        return in_cube & (sample_fields(occupancy[None], points)[:, 0] > LEVEL)

    def color(points: torch.Tensor) -> torch.Tensor:
        return sample_fields(attributes[0:3], points.to(device)).clamp(0, 1)

    return Shape(asset.vertices, asset.faces, inside, color)


def fresnel_shape(out: FresnelOutput, index: int) -> Shape:
    """Fresnel's result for object `index` of a batched network output, in the output frame."""
    return fields_shape(*upright_fields(out, index))


def sphere_shape(subdivisions: int = 3) -> Shape:
    """Baseline (a): a sphere, the same whatever the image."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=SPHERE_RADIUS)
    return Shape(
        torch.as_tensor(mesh.vertices, dtype=torch.float32),
        torch.as_tensor(mesh.faces),
        lambda p: p.norm(dim=-1) < SPHERE_RADIUS,
    )


def silhouette_inside(alpha: torch.Tensor) -> InsideTest:
    """Baseline (b)'s solid in the grid frame: points whose (x, z) falls on a crop pixel with alpha above 0.5
    (the crop spans x, z in `[-CROP_HALF, CROP_HALF]`, rows top to bottom) and whose |y| is at most half the
    silhouette's width. `alpha [S, S]`."""
    mask = alpha.detach().float().cpu() > 0.5
    size = mask.shape[-1]
    columns = mask.any(dim=0).nonzero()
    if columns.numel() == 0:
        raise ValueError("the silhouette is empty")
    half_depth = float(columns.max() - columns.min() + 1) * (2 * CROP_HALF / size) / 2

    def inside(points: torch.Tensor) -> torch.Tensor:
        points = points.cpu()
        col = torch.floor((points[:, 0] + CROP_HALF) / (2 * CROP_HALF) * size).long()
        row = size - 1 - torch.floor((points[:, 2] + CROP_HALF) / (2 * CROP_HALF) * size).long()
        on_image = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        hit = mask[row.clamp(0, size - 1), col.clamp(0, size - 1)]
        return on_image & hit & (points[:, 1].abs() <= half_depth)

    return inside


def prism_shape(alpha: torch.Tensor, elevation: float = 0.0, resolution: int = PRISM_RESOLUTION) -> Shape:
    """Baseline (b): the crop's silhouette extruded into a prism as deep as it is wide, meshed from a
    `resolution^3` occupancy by `fields_to_asset`. The prism is built in the grid (view) frame, then stood
    upright by the camera `elevation` (radians) so that it is judged in a gravity-up frame like the others."""
    grid_inside = silhouette_inside(alpha)
    occupancy = grid_inside(grid_centres(resolution)).float().reshape(resolution, resolution, resolution)
    vertices, faces = occupancy_mesh(occupancy)
    rotation = elevation_rotation(torch.tensor([float(elevation)]))[0]  # upright -> view

    def inside(points: torch.Tensor) -> torch.Tensor:
        return grid_inside(points.cpu().float() @ rotation.T)

    return Shape(vertices.cpu() @ rotation, faces, inside)  # rows: rotation^T v, view -> upright


# --- scoring ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreSettings:
    points: int = SURFACE_POINTS
    color_points: int = COLOR_POINTS
    threshold: float = F_THRESHOLD
    iou_resolution: int = IOU_RESOLUTION
    truth_resolution: int = TRUTH_RESOLUTION
    prism_resolution: int = PRISM_RESOLUTION


class TruthReference:
    """The truth's surface samples, placement, aligned occupancy and colours, computed once per object and
    shared by every method scored against it. `from_samples` makes one from stored surface samples alone
    (a teacher's mesh, `fresnel.distill`): without an inside test it has no occupancy, so no IoU."""

    def __init__(self, truth: Shape, settings: ScoreSettings, generator: torch.Generator) -> None:
        points, _ = sample_surface(truth.vertices.cpu(), truth.faces.cpu(), settings.points, generator)
        dense = colors = None
        if truth.color is not None:  # a denser sample, so that fine patterns are resolved
            dense, _ = sample_surface(
                truth.vertices.cpu(), truth.faces.cpu(), settings.color_points, generator
            )
            colors = truth.color(dense).float().cpu()
        self._fill(truth, settings, points, dense, colors)

    @classmethod
    def from_samples(
        cls, points: torch.Tensor, colors: torch.Tensor | None, settings: ScoreSettings
    ) -> TruthReference:
        """A reference known by surface `points [N, 3]` and their sRGB `colors [N, 3]` (or None) only."""
        reference = cls.__new__(cls)
        reference._fill(None, settings, points.float().cpu(), points.float().cpu(), colors)
        return reference

    def _fill(
        self,
        truth: Shape | None,
        settings: ScoreSettings,
        points: torch.Tensor,
        color_points: torch.Tensor | None,
        colors: torch.Tensor | None,
    ) -> None:
        self.shape = truth
        self.settings = settings
        self.points = points
        self.placement = bounds_placement(points.double())
        self.occupancy = (
            None
            if truth is None
            else aligned_occupancy(truth.inside, self.placement, settings.iou_resolution)
        )
        self.color_tree: cKDTree | None = None
        self.colors: torch.Tensor | None = None
        if color_points is not None and colors is not None:
            self.color_tree = cKDTree(self.placement.to_aligned(color_points.double()).numpy())
            self.colors = colors.float().cpu()


def failed_scores() -> dict[str, float]:
    """A method that produced no surface: the worst F-score and IoU; no Chamfer distance or colour."""
    return {
        "chamfer_l1": math.nan,
        "f_score": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "iou": 0.0,
        "color_error": math.nan,
        "color_error_255": math.nan,
        "yaw_deg": math.nan,
        "mirrored": False,
        "failed": True,
    }


def color_error_of(
    points: torch.Tensor, colors: torch.Tensor, scores: FrameFreeScores, reference: TruthReference
) -> float:
    """Mean absolute sRGB difference between the predicted `colors` at the predicted surface `points` and the
    true colour at the nearest true surface point. Among the turns that fit the shape equally well (an
    object's symmetries, `FrameFreeScores.ties`), the one that matches the colours best is used: the shape
    alone cannot say which side of a symmetric object is which."""
    assert reference.color_tree is not None and reference.colors is not None
    pred = points.detach().double().cpu()
    best = math.inf
    for yaw, mirrored in scores.ties():
        placement = bounds_placement(pred, yaw_mirror(yaw, mirrored))
        _, nearest = _nearest(reference.color_tree, placement.to_aligned(pred).numpy())
        best = min(best, float((colors - reference.colors[torch.from_numpy(nearest)]).abs().mean()))
    return best


def score_shape(pred: Shape, reference: TruthReference, generator: torch.Generator) -> dict[str, float]:
    """All metrics of one predicted shape against one truth (colour only where both have one, the IoU only
    where the truth has an occupancy)."""
    settings = reference.settings
    points, _ = sample_surface(pred.vertices.cpu(), pred.faces.cpu(), settings.points, generator)
    scores = frame_free_scores(points, reference.points, settings.threshold)
    volume_iou = math.nan
    if reference.occupancy is not None:
        occupancy = aligned_occupancy(pred.inside, scores.pred_placement, settings.iou_resolution)
        volume_iou = iou(occupancy, reference.occupancy)
    color_error = math.nan
    if pred.color is not None and reference.color_tree is not None and reference.colors is not None:
        color_error = color_error_of(points, pred.color(points).float().cpu(), scores, reference)
    return {
        "chamfer_l1": scores.chamfer_l1,
        "f_score": scores.f_score,
        "precision": scores.precision,
        "recall": scores.recall,
        "iou": volume_iou,
        "color_error": color_error,
        "color_error_255": color_error * 255,
        "yaw_deg": scores.yaw_deg,
        "mirrored": scores.mirrored,
        "failed": False,
    }


def score_methods(
    candidates: dict[str, Callable[[], Shape]],
    truth: Shape,
    settings: ScoreSettings,
    generator: torch.Generator,
) -> dict[str, dict[str, float]]:
    """Scores of every candidate (built lazily, so that a method that finds no surface fails alone)."""
    return score_candidates(candidates, TruthReference(truth, settings, generator), generator)


def score_candidates(
    candidates: dict[str, Callable[[], Shape]], reference: TruthReference, generator: torch.Generator
) -> dict[str, dict[str, float]]:
    """`score_methods` against a reference made already (e.g. `TruthReference.from_samples`)."""
    row = {}
    for name, build in candidates.items():
        try:
            shape = build()
        except ValueError:  # no surface: an empty prediction or silhouette
            row[name] = failed_scores()
            continue
        row[name] = score_shape(shape, reference, generator)
    return row


def method_candidates(
    out: FresnelOutput,
    images: torch.Tensor,
    index: int,
    elevation: float,
    sphere: Shape,
    settings: ScoreSettings,
) -> dict[str, Callable[[], Shape]]:
    """The three methods' shapes for image `index` of a batch, each built when it is scored."""
    return {
        "fresnel": lambda: fresnel_shape(out, index),
        "sphere": lambda: sphere,
        "prism": lambda: prism_shape(images[index, 3], elevation, settings.prism_resolution),
    }


def score_images(
    pipeline: FresnelPipeline,
    images: torch.Tensor,
    truths: Sequence[Shape],
    elevations: Sequence[float] | None = None,
    settings: ScoreSettings = ScoreSettings(),
    seed: int = 0,
) -> list[dict[str, dict[str, float]]]:
    """Fresnel and both baselines on network input crops `images [B, 4, S, S]` against `truths` (one `Shape`
    per image, any gravity-up frame). `elevations` (radians, the true camera elevations) stand the prism
    upright; without them it stays in the view frame. Returns one `{method: metrics}` row per image."""
    if len(truths) != images.shape[0]:
        raise ValueError("one true shape per image is needed")
    generator = torch.Generator().manual_seed(seed)
    out = pipeline.predict(images)
    sphere = sphere_shape()
    rows = []
    for i, truth in enumerate(truths):
        elevation = 0.0 if elevations is None else float(elevations[i])
        candidates = method_candidates(out, images, i, elevation, sphere, settings)
        rows.append(score_methods(candidates, truth, settings, generator))
    return rows


# --- diagnostics: the prediction itself, without the frame-free protocol ---------------------------------


def visible_from_camera(
    scene: Scenes, camera_position: torch.Tensor, points: torch.Tensor, tolerance: float
) -> torch.Tensor:
    """`[N]` bool: the surface `points [N, 3]` (world frame, on `scene`'s single object) that a ray from the
    camera reaches before any other surface, within `tolerance` of its length."""
    device = scene.active.device
    points, origin = points.float().to(device), camera_position.float().to(device)
    offsets = points - origin
    length = offsets.norm(dim=-1)
    t, hit = sphere_trace(scene, origin[None, None], (offsets / length[:, None])[None], VISIBILITY_STEPS)
    return (hit[0] & ((t[0] - length).abs() < tolerance)).cpu()


def registered_scores(
    logits: torch.Tensor,
    truth: Shape,
    scene: Scenes,
    cameras: Cameras,
    index: int,
    to_world: torch.Tensor,
    settings: ScoreSettings,
    generator: torch.Generator,
) -> dict[str, float]:
    """Diagnostics of Fresnel's raw occupancy `logits [G, G, G]` (grid frame, before it is stood upright)
    against the truth mapped into the grid frame by the true camera (`to_world [4, 4]`, grid -> world): no
    normalisation of the prediction and no turn search, so they say how accurate the prediction itself is.
    Only a shift along the viewing axis (grid y) is forgiven, the one the image cannot show: the prediction is
    moved by the whole number of cells, within `±DEPTH_SEARCH_CELLS`, with the lowest Chamfer distance.

    At that shift: F-score, precision and recall at `settings.threshold` in units of the truth's largest side;
    the ratio of the prediction's largest bounding-box side to the truth's; the recall of the true surface
    points that camera `index` of `cameras` sees and of those it does not, and the share it sees. Also the
    shift (cells) and the F-score without it. All but the share are NaN where the prediction has no
    surface."""
    true_world, _ = sample_surface(truth.vertices.cpu(), truth.faces.cpu(), settings.points, generator)
    world_to_grid = torch.linalg.inv(to_world.double().cpu())
    true_grid = true_world.double() @ world_to_grid[:3, :3].T + world_to_grid[:3, 3]
    seen = visible_from_camera(
        scene, cameras.position[index], true_world, 2.0 / settings.truth_resolution
    ).numpy()
    try:
        vertices, faces = occupancy_mesh(torch.sigmoid(logits.float()))
        pred_grid, _ = sample_surface(vertices.cpu(), faces.cpu(), settings.points, generator)
    except ValueError:
        return {**dict.fromkeys(DIAGNOSTICS, math.nan), "visible_share": float(seen.mean())}
    placement = bounds_placement(true_grid)
    true_n = placement.to_aligned(true_grid).numpy()
    pred_n = ((pred_grid.double() - placement.centre) / placement.side).numpy()
    true_tree, pred_tree = cKDTree(true_n), cKDTree(pred_n)
    cell = np.array([0.0, 1.0 / (logits.shape[1] * placement.side), 0.0])

    distances = {  # shift (cells) -> nearest distances prediction -> truth, truth -> prediction
        cells: (_nearest(true_tree, pred_n + cells * cell)[0], _nearest(pred_tree, true_n - cells * cell)[0])
        for cells in sorted(range(-DEPTH_SEARCH_CELLS, DEPTH_SEARCH_CELLS + 1), key=abs)
    }
    shift = min(distances, key=lambda cells: sum(d.mean() for d in distances[cells]))  # the first of equals
    forward, backward = distances[shift]
    precision, recall, f_score = precision_recall_f(forward, backward, settings.threshold)
    found = backward < settings.threshold
    return {
        "f_score": f_score,
        "precision": precision,
        "recall": recall,
        "extent_ratio": float((pred_n.max(0) - pred_n.min(0)).max()),  # the truth's largest side is 1 here
        "visible_recall": float(found[seen].mean()) if seen.any() else math.nan,
        "hidden_recall": float(found[~seen].mean()) if (~seen).any() else math.nan,
        "visible_share": float(seen.mean()),
        "depth_shift_cells": float(shift),
        "f_score_unshifted": precision_recall_f(*distances[0], settings.threshold)[2],
    }


def value_stats(values: Sequence[float]) -> dict:
    """`{mean, median, n}` of the defined (not NaN) `values`; NaN statistics when none is."""
    values = [v for v in values if not math.isnan(v)]
    return {
        "mean": statistics.fmean(values) if values else math.nan,
        "median": statistics.median(values) if values else math.nan,
        "n": len(values),
    }


def diagnostic_stats(rows: Sequence[dict]) -> dict:
    """`{<diagnostic>: {mean, median, n}}` over the rows that carry `registered` diagnostics."""
    return {
        key: value_stats([r["registered"][key] for r in rows if "registered" in r]) for key in DIAGNOSTICS
    }


# --- the evaluation loop ----------------------------------------------------------------------------------


def _merit(row: dict[str, dict[str, float]], method: str, metric: str) -> float:
    """A method's metric signed so that larger is better; an undefined value (no surface) is the worst."""
    value = row[method][metric]
    if math.isnan(value):
        return -math.inf
    return -value if LOWER_IS_BETTER[metric] else value


def method_stats(
    rows: Sequence[dict[str, dict[str, float]]], method: str, metrics: Sequence[str] = METRICS
) -> dict:
    """`{failures, <metric>: {mean, median, n}}` of one method over the rows where each metric is defined."""
    stats: dict = {"failures": sum(bool(r[method]["failed"]) for r in rows)}
    for metric in metrics:
        stats[metric] = value_stats([r[method][metric] for r in rows])
    return stats


def summarise(rows: Sequence[dict[str, dict[str, float]]]) -> dict:
    """Mean and median of every metric per method (over the objects where it is defined), failures, and the
    share of objects where Fresnel beats the better of the two baselines, per metric."""
    summary: dict = {"count": len(rows), "methods": {}, "fresnel_beats_best_baseline": {}}
    for method in METHODS:
        summary["methods"][method] = method_stats(rows, method)
    for metric in ("chamfer_l1", "f_score", "iou"):
        wins = sum(
            _merit(r, "fresnel", metric) > max(_merit(r, "sphere", metric), _merit(r, "prism", metric))
            for r in rows
        )
        summary["fresnel_beats_best_baseline"][metric] = wins / len(rows) if rows else math.nan
    if any("registered" in r for r in rows):
        summary["fresnel_registered"] = diagnostic_stats(rows)
    return summary


def evaluate(
    pipeline: FresnelPipeline,
    count: int = 200,
    seed: int = EVAL_SEED,
    device: torch.device | str | None = None,
    rules: SceneRules = EVAL_RULES,
    cameras: CameraRules = EVAL_CAMERAS,
    batch_size: int = 8,
    settings: ScoreSettings = ScoreSettings(),
    render_resolution: int | None = None,
    log: Callable[[str], None] = lambda _: None,
    workers: int = 1,
    diagnose: bool = True,
) -> dict:
    """Fresnel and the baselines on `count` held-out objects. The objects are fixed by `seed`, `count`,
    `batch_size` and the device type (the generator lives on `device`); `workers` threads score the objects
    of a batch side by side, with the same results in any number. Returns `{"rows", "summary",
    "settings"}` with one row per object (`index`, camera elevation, and each method's metrics, and with
    `diagnose` Fresnel's `registered_scores` under `registered`)."""
    device = torch.device(device or pipeline.device)
    config = pipeline.model.config
    generator = torch.Generator(device).manual_seed(seed)
    extra = {} if render_resolution is None else {"render_resolution": render_resolution}
    rows: list[dict] = []
    sphere = sphere_shape()

    def score_object(out: FresnelOutput, batch: Batch, i: int, index: int) -> dict:
        truth = truth_shape(batch.scenes, i, settings.truth_resolution)
        elevation = float(batch.elevation[i])
        candidates = method_candidates(out, batch.images, i, elevation, sphere, settings)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)  # per object: any order
        row = {
            "index": index,
            "elevation_deg": math.degrees(elevation),
            "predicted_elevation_deg": math.degrees(float(out.elevation[i])),
            **score_methods(candidates, truth, settings, generator),
        }
        if diagnose:  # after the scores, so that they draw the same samples with or without
            scene = batch.scenes.select(torch.tensor([i], device=batch.scenes.active.device))
            row["registered"] = registered_scores(
                out.occupancy_logits[i],
                truth,
                scene,
                batch.cameras,
                i,
                batch.to_world[i],
                settings,
                generator,
            )
        return row

    with ThreadPoolExecutor(max(1, workers)) as pool:  # scoring is mostly NumPy/SciPy, which frees the GIL
        while len(rows) < count:
            size = min(batch_size, count - len(rows))
            batch = make_batch(
                size,
                generator,
                grid=config.grid,
                image_size=config.image_size,
                rules=rules,
                cameras=cameras,
                device=device,
                targets=False,
                **extra,
            )
            out = pipeline.predict(batch.images)
            first = len(rows)
            rows += pool.map(
                score_object, [out] * size, [batch] * size, range(size), range(first, first + size)
            )
            log(f"{len(rows)}/{count} objects")
    return {
        "rows": rows,
        "summary": summarise(rows),
        "settings": {
            "count": count,
            "seed": seed,
            "batch_size": batch_size,
            "device": device.type,
            "rules": asdict(rules),
            "cameras": asdict(cameras),
            "scores": asdict(settings),
            "render_resolution": render_resolution,
            "diagnose": diagnose,
        },
    }
