"""Fresnel's evaluation: frame-free point scores, occupancy IoU, colour error, baselines and the loop (tiny sizes)."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from fresnel import evaluation as ev
from fresnel.config import TINY_CONFIG
from fresnel.data.batches import grid_centres, make_batch
from fresnel.data.render import BOUNDING_RADIUS, Cameras, render
from fresnel.data.scenes import BOX, SUBTRACT, SceneRules, Scenes, normalise, sample_scenes
from fresnel.image_input import crop_to_object
from fresnel.network import FresnelNet
from fresnel.pipeline import FresnelPipeline
from fresnel.surface import stand_upright
from fresnel.training import shift_depth

TINY = ev.ScoreSettings(
    points=2500, color_points=5000, iou_resolution=20, truth_resolution=28, prism_resolution=20
)


def box_points(
    extents: tuple[float, float, float],
    n: int = 800,
    seed: int = 0,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> torch.Tensor:
    mesh = trimesh.creation.box(extents=extents)
    points, _ = ev.sample_surface(
        torch.as_tensor(mesh.vertices, dtype=torch.float32),
        torch.as_tensor(mesh.faces),
        n,
        torch.Generator().manual_seed(seed),
    )
    return points + torch.tensor(offset)


def chiral_points(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Three unequal boxes at different heights: no turn about z or mirror maps the set onto itself."""
    return torch.cat(
        [
            box_points((0.6, 0.4, 0.3), n, seed),
            box_points((0.2, 0.2, 0.2), n // 2, seed + 1, (0.4, 0, 0.2)),
            box_points((0.15, 0.3, 0.15), n // 2, seed + 2, (0.0, 0.3, -0.1)),
        ]
    )


def rounded_cube_points(n: int = 800, resolution: int = 24) -> torch.Tensor:
    p = grid_centres(resolution)
    q = p.abs() - 0.3
    sdf = q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0) - 0.1  # box 0.8 wide, radius 0.1
    vertices, faces = ev.occupancy_mesh((sdf < 0).float().reshape(resolution, resolution, resolution))
    return ev.sample_surface(vertices, faces, n, torch.Generator().manual_seed(3))[0]


def test_sample_surface_is_area_weighted_and_on_the_mesh() -> None:
    # A 2 x 1 rectangle as two triangles of area 1.5 and 0.5 (split off-centre): points land 3 : 1.
    vertices = torch.tensor([[0.0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0], [1.5, 1, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 4], [0, 4, 3]])  # areas 1.0, 0.25, 0.75
    points, ids = ev.sample_surface(vertices, faces, 8000, torch.Generator().manual_seed(0))
    share = torch.bincount(ids, minlength=3).float() / 8000
    assert torch.allclose(share, torch.tensor([0.5, 0.125, 0.375]), atol=0.02)
    assert points[:, 2].abs().max() == 0 and points[:, 0].min() >= 0 and points[:, 0].max() <= 2
    with pytest.raises(ValueError):
        ev.sample_surface(vertices, torch.tensor([[0, 1, 1]]), 10, torch.Generator())


def test_normalise_points_centres_and_scales_the_bounding_box() -> None:
    points = torch.tensor([[1.0, 2, 3], [3, 3, 3.5], [2, 2.5, 4]])
    out = ev.normalise_points(points)
    lo, hi = out.min(0).values, out.max(0).values
    assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=1e-6)
    assert math.isclose(float((hi - lo).max()), 1.0, rel_tol=1e-6)


def test_identical_point_sets_score_perfectly() -> None:
    points = chiral_points()
    scores = ev.frame_free_scores(points, points)
    assert scores.f_score == 1.0 and scores.chamfer_l1 < 1e-9
    assert scores.yaw_deg == 0.0 and not scores.mirrored


def test_turned_and_mirrored_copy_is_matched() -> None:
    points = chiral_points()
    turn = ev.yaw_mirror(37.0, False, torch.float32) @ torch.diag(torch.tensor([-1.0, 1, 1]))
    moved = points @ turn.T
    # Without the search the sets would not match:
    unaligned = torch.cdist(ev.normalise_points(moved), ev.normalise_points(points)).min(dim=1).values
    assert float((unaligned < ev.F_THRESHOLD).float().mean()) < 0.9
    scores = ev.frame_free_scores(moved, points)
    assert scores.f_score > 0.99 and scores.chamfer_l1 < 0.01
    assert scores.mirrored  # undoing "mirror, then turn by 37" is "mirror, then turn by 37" again
    assert abs(scores.yaw_deg - 37.0) <= ev.FINE_STEP_DEG


def test_shifted_and_scaled_copy_matches_after_normalisation() -> None:
    points = chiral_points()
    scores = ev.frame_free_scores(points * 2.5 + torch.tensor([1.0, -2.0, 3.0]), points)
    assert scores.f_score == 1.0 and scores.chamfer_l1 < 1e-5


def test_scores_order_shapes_by_likeness() -> None:
    cube = box_points((0.8, 0.8, 0.8))
    sphere = ev.sphere_shape(2)
    sphere_points = ev.sample_surface(sphere.vertices, sphere.faces, 800, torch.Generator().manual_seed(1))[0]
    vs_sphere = ev.frame_free_scores(sphere_points, cube)
    vs_rounded = ev.frame_free_scores(rounded_cube_points(), cube)
    vs_plate = ev.frame_free_scores(box_points((0.8, 0.8, 0.08), seed=2), cube)
    assert vs_sphere.f_score < 0.9
    assert vs_rounded.chamfer_l1 < vs_plate.chamfer_l1 and vs_rounded.f_score > vs_plate.f_score
    assert vs_rounded.chamfer_l1 < vs_sphere.chamfer_l1


def test_occupancy_iou_of_identical_disjoint_and_half_overlapping_solids() -> None:
    identity = ev.bounds_placement(torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]))

    def cube(p: torch.Tensor) -> torch.Tensor:
        return p.abs().max(dim=-1).values < 0.4

    assert ev.occupancy_iou(cube, identity, cube, identity, resolution=16) == 1.0
    left, right = (lambda p: cube(p) & (p[:, 0] < 0)), (lambda p: cube(p) & (p[:, 0] > 0))
    assert ev.occupancy_iou(left, identity, right, identity, resolution=16) == 0.0
    assert ev.occupancy_iou(cube, identity, right, identity, resolution=16) == pytest.approx(0.5)


def test_occupancy_iou_maps_the_lattice_into_each_frame() -> None:
    # The same off-centre ball described in two frames (moved, scaled, turned, mirrored): IoU about 1.
    def ball(p: torch.Tensor) -> torch.Tensor:
        return (p - torch.tensor([0.1, 0.0, 0.0])).norm(dim=-1) < 0.3

    turn = ev.yaw_mirror(50.0, True, torch.float32)
    shift = torch.tensor([2.0, 1.0, -1.0])

    def moved_ball(p: torch.Tensor) -> torch.Tensor:  # p = 3 * turn @ q + shift for q in ball's frame
        return ball(((p - shift) / 3) @ turn)

    surface = torch.nn.functional.normalize(
        torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    points = surface * 0.3 + torch.tensor([0.1, 0.0, 0.0])
    scores = ev.frame_free_scores((points @ turn.T) * 3 + shift, points)
    value = ev.occupancy_iou(moved_ball, scores.pred_placement, ball, scores.true_placement, resolution=24)
    assert value > 0.9
    wrong = ev.Placement(torch.eye(3), scores.pred_placement.centre, scores.pred_placement.side)
    assert ev.occupancy_iou(moved_ball, wrong, ball, scores.true_placement, resolution=24) < 0.1


def test_color_error_is_measured_at_the_nearest_true_point() -> None:
    g = 16
    ball = torch.sigmoid((0.35 - grid_centres(g).norm(dim=-1)) * g / 0.75).reshape(g, g, g)
    attributes = torch.full((6, g, g, g), 0.2)
    attributes[0] = 0.5  # red 0.5, green and blue 0.2
    pred = ev.fields_shape(ball, attributes)
    truth = ev.sphere_shape(2)
    truth.color = lambda p: torch.full((p.shape[0], 3), 0.2)
    reference = ev.TruthReference(truth, TINY, torch.Generator().manual_seed(0))
    scores = ev.score_shape(pred, reference, torch.Generator().manual_seed(1))
    assert scores["color_error"] == pytest.approx(0.1, abs=1e-3)  # (0.3 + 0 + 0) / 3
    assert scores["color_error_255"] == pytest.approx(25.5, abs=0.3)
    assert scores["iou"] > 0.8 and scores["f_score"] > 0.9


def box_scene(half: tuple[float, float, float]) -> Scenes:
    """One sharp-cornered, axis-aligned box with these half sizes (before normalisation)."""
    rules = SceneRules(
        min_parts=1,
        max_parts=1,
        family_weights=(1.0, 0.0, 0.0, 0.0),
        subtract_p=0.0,
        symmetric_p=0.0,
        upright_p=1.0,
        thin_p=0.0,
        transparent_p=0.0,
    )
    scenes = sample_scenes(1, torch.Generator().manual_seed(0), rules)
    assert int(scenes.family[0, 0]) == BOX and int(scenes.op[0, 0]) != SUBTRACT
    scenes.rotation[:] = torch.eye(3)
    scenes.centre[:] = 0.0
    scenes.size[0, 0] = torch.tensor(half)
    scenes.shape[0, 0, 0] = 0.0  # sharp corners
    return normalise(scenes)


def render_crop(scenes: Scenes, elevation_deg: float, size: int = 32) -> torch.Tensor:
    """The network input crop `[1, 4, size, size]` of a 64-pixel render from yaw 0 at this elevation."""
    fov = math.radians(30.0)
    cams = Cameras(
        yaw=torch.tensor([0.0]),
        elevation=torch.tensor([math.radians(elevation_deg)]),
        tan_half_fov=torch.tensor([math.tan(fov / 2)]),
        distance=torch.tensor([BOUNDING_RADIUS / math.sin(fov / 2)]),
    )
    rgba = render(scenes, cams, 64, torch.Generator().manual_seed(0))
    return crop_to_object(rgba, size)[0]


def test_prism_baseline_of_a_rendered_box_is_box_like() -> None:
    scenes = box_scene((0.3, 0.3, 0.15))
    elevation = 10.0
    crop = render_crop(scenes, elevation)
    truth = ev.truth_shape(scenes, 0, TINY.truth_resolution)
    candidates = {
        "prism": lambda: ev.prism_shape(crop[0, 3], math.radians(elevation), TINY.prism_resolution),
        "sphere": ev.sphere_shape,
    }
    row = ev.score_methods(candidates, truth, TINY, torch.Generator().manual_seed(0))
    assert row["prism"]["iou"] > 0.5
    assert row["prism"]["iou"] > row["sphere"]["iou"] and row["prism"]["f_score"] > row["sphere"]["f_score"]
    with pytest.raises(ValueError):
        ev.prism_shape(torch.zeros(32, 32))


def test_prism_inside_test_follows_the_crop_layout() -> None:
    alpha = torch.zeros(8, 8)
    alpha[0:2, 6:8] = 1.0  # top right corner of the image; 2 pixels wide
    inside = ev.silhouette_inside(alpha)
    step = 2 * 0.45 / 8
    top_right = torch.tensor(
        [[0.45 - step / 2, 0.0, 0.45 - step / 2], [0.45 - step, step * 0.9, 0.45 - step]]
    )
    assert inside(top_right).all()
    others = torch.tensor([[-0.4, 0.0, 0.4], [0.4, 0.0, -0.4], [0.4, step * 1.1, 0.4], [0.6, 0.0, 0.4]])
    assert not inside(others).any()


@pytest.fixture(scope="module")
def tiny_pipeline() -> FresnelPipeline:
    torch.manual_seed(0)
    return FresnelPipeline(FresnelNet(TINY_CONFIG))


def test_oracle_fields_score_near_perfectly() -> None:
    # The training targets of an object, stood upright by the true elevation, go through Fresnel's own path
    # (stand_upright, fields_to_asset, sample_fields): any frame mistake would show here.
    batch = make_batch(1, torch.Generator().manual_seed(8), grid=24, image_size=48, render_resolution=48)
    truth = ev.truth_shape(batch.scenes, 0, TINY.truth_resolution)
    occupancy, attributes = stand_upright(batch.occupancy[0], batch.attributes[0], float(batch.elevation[0]))
    candidates = {
        "oracle": lambda: ev.fields_shape(occupancy, attributes),
        "inverted": lambda: ev.fields_shape(occupancy, 1 - attributes),  # right shape, wrong colours
        "sphere": ev.sphere_shape,
    }
    row = ev.score_methods(candidates, truth, TINY, torch.Generator().manual_seed(0))
    oracle = row["oracle"]
    assert oracle["f_score"] > 0.8 and oracle["iou"] > 0.7 and oracle["chamfer_l1"] < 0.05
    assert oracle["f_score"] > row["sphere"]["f_score"] + 0.3 and oracle["iou"] > row["sphere"]["iou"]
    # 24^3 attributes blur the fine patterns, so the colour error is small but not zero.
    assert oracle["color_error"] < 0.25 and oracle["color_error"] < 0.5 * row["inverted"]["color_error"]


def test_score_images_and_evaluate_with_the_tiny_network(tiny_pipeline: FresnelPipeline) -> None:
    scenes = box_scene((0.3, 0.25, 0.2))
    crop = render_crop(scenes, 0.0, TINY_CONFIG.image_size)
    rows = ev.score_images(
        tiny_pipeline, crop, [ev.truth_shape(scenes, 0, TINY.truth_resolution)], [0.0], TINY
    )
    assert len(rows) == 1 and set(rows[0]) == set(ev.METHODS)
    for method in ev.METHODS:
        scores = rows[0][method]
        assert scores["failed"] or (0 <= scores["f_score"] <= 1 and 0 <= scores["iou"] <= 1)
    result = ev.evaluate(
        tiny_pipeline, count=2, seed=5, device="cpu", batch_size=2, settings=TINY, render_resolution=48
    )
    again = ev.evaluate(
        tiny_pipeline, count=2, seed=5, device="cpu", batch_size=2, settings=TINY, render_resolution=48
    )
    assert [r["prism"]["chamfer_l1"] for r in result["rows"]] == [
        r["prism"]["chamfer_l1"] for r in again["rows"]
    ]
    summary = result["summary"]
    assert summary["count"] == 2 and set(summary["methods"]) == set(ev.METHODS)
    sphere_f = [r["sphere"]["f_score"] for r in result["rows"]]
    assert summary["methods"]["sphere"]["f_score"]["mean"] == pytest.approx(sum(sphere_f) / 2)
    assert 0.0 <= summary["fresnel_beats_best_baseline"]["f_score"] <= 1.0
    registered = summary["fresnel_registered"]
    assert set(registered) == set(ev.DIAGNOSTICS)
    assert all(0 <= r["registered"]["visible_share"] <= 1 for r in result["rows"])


def test_summary_counts_wins_against_the_better_baseline() -> None:
    def row(fresnel: float, sphere: float, prism: float) -> dict:
        def scores(f: float) -> dict:
            return {
                "chamfer_l1": 1 - f,
                "f_score": f,
                "iou": f,
                "color_error": math.nan,
                "failed": math.isnan(f),
            }

        return {"fresnel": scores(fresnel), "sphere": scores(sphere), "prism": scores(prism)}

    summary = ev.summarise(
        [row(0.9, 0.5, 0.8), row(0.6, 0.7, 0.2), row(math.nan, 0.1, 0.1), row(0.5, 0.4, 0.3)]
    )
    assert summary["fresnel_beats_best_baseline"]["f_score"] == pytest.approx(0.5)
    assert summary["fresnel_beats_best_baseline"]["chamfer_l1"] == pytest.approx(0.5)
    assert summary["methods"]["fresnel"]["failures"] == 1
    assert summary["methods"]["fresnel"]["f_score"]["median"] == pytest.approx(0.6)


def test_registered_scores_find_a_true_prediction_and_a_shrunk_one() -> None:
    """The target occupancy itself scores near 1 with the true size and finds the seen and the hidden surface;
    the same field shrunk by a few voxels is reported smaller and scores lower; moved along depth, it is moved
    back (the shift the image cannot show) and scores as before; an empty one scores NaN."""
    grid = 32
    batch = make_batch(2, torch.Generator().manual_seed(7), grid=grid, image_size=64, render_resolution=96)

    def scores(i: int, field: torch.Tensor) -> dict:
        truth = ev.truth_shape(batch.scenes, i, 48)
        scene = batch.scenes.select(torch.tensor([i]))
        logits = torch.logit(field.clamp(1e-4, 1 - 1e-4))
        generator = torch.Generator().manual_seed(0)
        return ev.registered_scores(
            logits, truth, scene, batch.cameras, i, batch.to_world[i], TINY, generator
        )

    for i in range(2):
        true = scores(i, batch.occupancy[i])
        small = scores(i, torch.sigmoid(-(batch.distance[i] + 1.5) / 0.75))
        assert true["f_score"] > 0.9 and abs(true["extent_ratio"] - 1) < 0.06
        assert 0.1 < true["visible_share"] < 0.9
        assert true["visible_recall"] > 0.9 and true["hidden_recall"] > 0.9
        assert small["extent_ratio"] < true["extent_ratio"] - 0.03 and small["f_score"] < true["f_score"]
        assert true["depth_shift_cells"] == 0 and true["f_score_unshifted"] == true["f_score"]
        deeper = scores(i, shift_depth(batch.occupancy[i][None], 3, 2, 0.0)[0])  # moved 3 cells along depth
        assert deeper["depth_shift_cells"] == -3 and deeper["f_score"] > 0.9
        assert deeper["f_score_unshifted"] < deeper["f_score"] - 0.1
    empty = scores(1, torch.zeros((grid,) * 3))
    assert all(math.isnan(v) for k, v in empty.items() if k != "visible_share")
    assert empty["visible_share"] == true["visible_share"]
