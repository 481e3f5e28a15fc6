"""Fresnel's training on CPU at the tiny size: a few steps, exact resumption, mirrored data, curves, export."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from fresnel.checkpoint import load_fresnel
from fresnel.config import TINY_CONFIG
from fresnel.data.batches import make_batch
from fresnel.network import lift
from fresnel.training import STATE_FILE, StepData, TrainSettings, export_checkpoint, train

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
    batch = make_batch(
        6,
        torch.Generator().manual_seed(5),
        grid=TINY_CONFIG.grid,
        image_size=TINY_CONFIG.image_size,
        render_resolution=64,
        render_steps=24,
    )
    data = StepData.of(batch)

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
