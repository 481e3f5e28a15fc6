"""Fresnel's training on CPU at the tiny size: a few steps, exact resumption, mirrored data, curves, export."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from fresnel.checkpoint import FresnelCheckpointError, init_weights_from, load_fresnel, save_fresnel
from fresnel.config import TINY_CONFIG
from fresnel.data.batches import make_batch
from fresnel.data.scenes import EVAL_RULES, TRAIN_RULES, sample_scenes
from fresnel.network import FresnelNet, FresnelOutput, lift
from fresnel.training import (
    STATE_FILE,
    StepData,
    TrainSettings,
    export_checkpoint,
    loss_terms,
    shift_depth,
    train,
    training_rules,
)

SETTINGS = TrainSettings(
    batch_size=2,
    warmup_steps=2,
    total_steps=20,
    render_resolution=48,
    render_steps=16,
    log_every=1,
    data_chunk=2,
    save_every_s=1e9,
)


def quiet(_: str) -> None:
    pass


def weights(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().float() for v in state["model"].values()])


def tiny_step_data(count: int, seed: int, render_resolution: int, render_steps: int) -> StepData:
    """A batch of procedural objects at the tiny configuration's sizes, with its targets."""
    batch = make_batch(
        count,
        torch.Generator().manual_seed(seed),
        grid=TINY_CONFIG.grid,
        image_size=TINY_CONFIG.image_size,
        render_resolution=render_resolution,
        render_steps=render_steps,
    )
    return StepData.of(batch)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Seven steps in one call: one whole chunk (two batches as rendered, then mirrored) and three more."""
    return train(tmp_path_factory.mktemp("straight"), TINY_CONFIG, SETTINGS, max_steps=7, log=quiet)


def test_a_run_learns_and_writes_its_curves(straight_run: dict, tmp_path_factory) -> None:
    history = straight_run["history"]
    assert [h["step"] for h in history] == list(range(1, 8))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert history[0]["data_s"] > 0 and "data_s" not in history[1]  # one data call per chunk of 4 steps
    assert history[4]["data_s"] > 0
    folder = tmp_path_factory.mktemp("curves")
    state = train(folder, TINY_CONFIG, SETTINGS, max_steps=3, log=quiet)
    assert json.loads((folder / "loss.json").read_text()) == state["history"]
    assert (folder / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("first_call", [2, 4, 5])
def test_resuming_gives_the_same_weights_as_one_call(straight_run: dict, tmp_path, first_call: int) -> None:
    """Stopping mid-chunk, at a chunk's end or just after it, then resuming: the same data, the same weights."""
    train(tmp_path, TINY_CONFIG, SETTINGS, max_steps=first_call, log=quiet)
    resumed = train(tmp_path, max_steps=7, log=quiet)  # config and settings come from the run folder
    assert resumed["step"] == 7
    torch.testing.assert_close(weights(resumed), weights(straight_run), rtol=0, atol=1e-6)
    for a, b in zip(resumed["history"], straight_run["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_mirrored_objects_keep_image_and_targets_aligned() -> None:
    """The silhouette of the occupancy target seen along depth matches the image alpha (up to perspective),
    also mirrored; targets left unmirrored, or flipped along another axis, match clearly worse."""
    data = tiny_step_data(6, seed=5, render_resolution=64, render_steps=24)

    def agreement(part: StepData) -> float:
        alpha = F.avg_pool2d(part.images[:, 3:4], 2)  # image size is twice the grid
        seen = lift(alpha)[:, 0, :, 0, :] > 0.5  # [B, x, z]
        solid = part.occupancy.amax(dim=2) > 0.5  # along depth (grid y)
        return float((seen & solid).sum() / (seen | solid).sum())

    plain, mirrored = data.part(0, 6, mirrored=False), data.part(0, 6, mirrored=True)
    assert agreement(plain) > 0.7
    assert agreement(mirrored) == pytest.approx(agreement(plain), abs=1e-6)
    for occupancy in (plain.occupancy, plain.occupancy.flip(3)):  # not mirrored; flipped along grid z
        assert agreement(dataclasses.replace(mirrored, occupancy=occupancy)) < agreement(mirrored) - 0.03
    torch.testing.assert_close(mirrored.images.flip(3), plain.images)


def test_export_writes_an_engine_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    train(run, TINY_CONFIG, dataclasses.replace(SETTINGS, data_chunk=1), max_steps=1, log=quiet)
    assert (run / STATE_FILE).exists()
    exported = export_checkpoint(run, tmp_path / "export")
    loaded = load_fresnel(tmp_path / "export")
    assert loaded.config == TINY_CONFIG
    for (name, a), (_, b) in zip(exported.state_dict().items(), loaded.state_dict().items(), strict=True):
        torch.testing.assert_close(a.half().float(), b.float(), msg=name)


def test_shift_depth_moves_along_one_axis_and_fills_what_it_leaves() -> None:
    values = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    up, down = shift_depth(values, 1, 1, -1.0), shift_depth(values, -2, 1, -1.0)
    torch.testing.assert_close(up[:, 1:], values[:, :3])
    assert (up[:, 0] == -1).all()
    torch.testing.assert_close(down[:, :2], values[:, 2:])
    assert (down[:, 2:] == -1).all()
    assert shift_depth(values, 0, 1, -1.0) is values
    assert (shift_depth(values, 9, 1, -1.0) == -1).all()


def test_the_depth_shift_loss_forgives_where_along_depth_the_object_sits() -> None:
    """A prediction that is the target moved three cells along depth: the plain loss punishes it; with
    shifts of up to four cells the loss is that of the unmoved prediction, and the term `shift` says 3.
    A shift along another axis is not forgiven, and shift 0 is the plain loss."""
    data = tiny_step_data(2, seed=3, render_resolution=48, render_steps=16)

    def prediction(occupancy: torch.Tensor, attributes: torch.Tensor) -> FresnelOutput:
        return FresnelOutput(
            torch.logit(occupancy.clamp(1e-3, 1 - 1e-3)),
            torch.logit(attributes.clamp(1e-3, 1 - 1e-3)),
            data.elevation,
        )

    exact = prediction(data.occupancy, data.attributes)
    moved = prediction(shift_depth(data.occupancy, 3, 2, 0.0), shift_depth(data.attributes, 3, 3, 0.0))
    sideways = prediction(shift_depth(data.occupancy, 3, 1, 0.0), data.attributes)
    plain = loss_terms(exact, data)  # the soft targets' own entropy: not zero
    excess = float(loss_terms(moved, data)["occupancy"] - plain["occupancy"])
    assert excess > 0.5
    forgiven = loss_terms(moved, data, depth_shift=4)
    assert float(forgiven["shift"]) == 3.0
    assert float(forgiven["occupancy"] - plain["occupancy"]) < 0.1 * excess
    assert float(forgiven["attributes"]) < 1.5 * float(plain["attributes"]) + 1e-3
    assert float(loss_terms(sideways, data, depth_shift=4)["occupancy"] - plain["occupancy"]) > 0.5 * excess
    assert float(loss_terms(exact, data, depth_shift=4)["shift"]) == 0.0
    zero = loss_terms(moved, data, depth_shift=0)
    assert "shift" not in zero and float(zero["loss"]) == float(loss_terms(moved, data)["loss"])


def test_a_run_with_depth_shifts_logs_them(tmp_path) -> None:
    settings = dataclasses.replace(SETTINGS, depth_shift_voxels=2)
    state = train(tmp_path, TINY_CONFIG, settings, max_steps=2, log=quiet)
    assert all(0.0 <= h["shift"] <= 2.0 for h in state["history"])
    assert train(tmp_path, max_steps=3, log=quiet)["settings"]["depth_shift_voxels"] == 2


def test_a_network_grown_by_blocks_and_lifting_paths_starts_as_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    base = FresnelNet(TINY_CONFIG).eval()
    save_fresnel(base, tmp_path / "base", dtype=torch.float32)
    config = dataclasses.replace(TINY_CONFIG, decoder_blocks=(2, 3), top_down=True, depth_lifting=True)
    grown = FresnelNet(config).eval()
    new = init_weights_from(grown, tmp_path / "base")
    added = ("levels.0.1.", "levels.1.1.", "levels.1.2.", "top_down.", "depth_logits.", "depth_proj.")
    assert new and all(name.startswith(added) for name in new)
    images = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = base(images), grown(images)
    assert torch.allclose(before.occupancy_logits, after.occupancy_logits, atol=1e-6)
    assert torch.allclose(before.attribute_logits, after.attribute_logits, atol=1e-6)
    assert grown.levels[1][2].conv1.weight.abs().sum() > 0  # only the last convolution starts at zero
    shrunk = FresnelNet(dataclasses.replace(TINY_CONFIG, decoder_blocks=(1, 0)))
    with pytest.raises(FresnelCheckpointError):
        init_weights_from(shrunk, tmp_path / "base")
    save_fresnel(grown, tmp_path / "grown", dtype=torch.float32)
    with pytest.raises(FresnelCheckpointError):  # a model without the checkpoint's additions
        init_weights_from(FresnelNet(dataclasses.replace(config, top_down=False)), tmp_path / "grown")


def test_the_lifting_additions_learn_a_depth_per_pixel():
    config = dataclasses.replace(TINY_CONFIG, top_down=True, depth_lifting=True)
    torch.manual_seed(0)
    model = FresnelNet(config)
    images = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    model(images).occupancy_logits.square().mean().backward()
    for name in ("top_down.0.weight", "depth_proj.1.weight"):  # zero at the start, but they learn
        weight = model.get_parameter(name)
        assert not weight.any() and weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.depth_proj[1].weight.normal_()
        placed = model.place_along_rays(1, torch.rand(1, config.encoder_channels[0], 16, 16))
        assert placed.shape == (1, config.decoder_channels[1], 16, 16, 16)
        # a ray's profile follows the pixel's own distribution, so it varies along depth
        assert placed[0, 0, 3, :, 5].std() > 0


def test_a_run_may_train_on_objects_of_more_parts():
    wide = training_rules(dataclasses.replace(SETTINGS, max_parts=7))
    assert wide != EVAL_RULES and wide.family_weights == TRAIN_RULES.family_weights  # still the training mix
    counts = sample_scenes(64, torch.Generator().manual_seed(0), wide).active.sum(1)
    assert int(counts.max()) > TRAIN_RULES.max_parts
    assert training_rules(SETTINGS) == TRAIN_RULES
    with pytest.raises(ValueError):
        training_rules(dataclasses.replace(SETTINGS, max_parts=8))
