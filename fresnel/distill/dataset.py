"""The teacher data as training and evaluation samples in the student's frame.

A *sample* is one view of one input with one teacher seed. Loading keeps each teacher run's volumes
compact in memory (signed distance int8, attributes uint8, both 64^3 in the teacher's frame) and fits each
view's camera pose once (`frames.fit_pose`, cached in `<teacher>/poses.json`). `batch` maps a list of samples
into the student's grid on the training device (`frames.student_targets`, `frames.student_noise`) as a
`fresnel.training.StepData`, the batch type of Fresnel's own training.

Held-out inputs: a fixed share of the inputs, chosen by a hash of their ids (so adding images moves no
earlier input across), at least one when there are two or more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import FresnelConfig
from ..network import structure_noise
from ..training import StepData
from .frames import Pose, PoseBatch, fit_pose, student_noise, student_targets, with_body
from .settings import HOLDOUT_FRACTION
from .store import VIEWS_FILE, TeacherStore, read_npz, write_json
from .targets import DISTANCE_SCALE, dense_attributes

POSES_FILE = "poses.json"


@dataclass(frozen=True)
class Sample:
    item: str
    view: int
    seed: int
    run: int  # index of the teacher run (item, seed) in the dataset


@dataclass
class TeacherRunData:
    """What training and evaluation need of one teacher run, compact."""

    item: str
    seed: int
    distance: torch.Tensor  # int8 [64, 64, 64], `DISTANCE_SCALE` per voxel
    attributes: torch.Tensor  # uint8 [6, 64, 64, 64]
    surface_points: torch.Tensor  # float16 [P, 3]
    surface_colors: torch.Tensor  # uint8 [P, 3]
    stats: dict


def is_held_out(item_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(item_id.encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


class TeacherDataset:
    """Every finished input of a teacher-data folder, split into training and held-out samples."""

    def __init__(
        self,
        teacher_dir: Path,
        holdout_fraction: float = HOLDOUT_FRACTION,
        log: Callable[[str], None] = print,
    ) -> None:
        self.store = TeacherStore(teacher_dir)
        done = self.store.done_items()
        if not done:
            raise ValueError(f"there is no finished teacher data in {teacher_dir}")
        self.crops: dict[str, torch.Tensor] = {}  # uint8 [V, 4, S, S] per item
        self.runs: list[TeacherRunData] = []
        latent_shapes = set()
        for item_id, record in done:
            self.crops[item_id] = torch.from_numpy(
                read_npz(self.store.item_dir(item_id) / VIEWS_FILE)["crops"]
            )
            for stats in record["stats"]:
                arrays = read_npz(self.store.seed_file(item_id, stats["seed"]))
                latent_shapes.add(arrays["latent"].shape)
                self.runs.append(
                    TeacherRunData(
                        item_id,
                        int(arrays["seed"]),
                        torch.from_numpy(arrays["distance"]),
                        dense_attributes(arrays),
                        torch.from_numpy(arrays["surface_points"]),
                        torch.from_numpy(arrays["surface_colors"]),
                        stats,
                    )
                )
        if len(latent_shapes) != 1:
            raise ValueError(
                f"the teacher data mixes sparse-structure latents of shapes {sorted(latent_shapes)}"
            )
        channels, resolution = next(iter(latent_shapes))[:2]
        self.noise_channels, self.noise_resolution = int(channels), int(resolution)
        self.image_size = next(iter(self.crops.values())).shape[-1]
        self.poses = self._fit_poses(log)
        items = sorted(self.crops)
        held = {i for i in items if is_held_out(i, holdout_fraction)}
        if not held and len(items) >= 2 and holdout_fraction > 0:
            held = {min(items, key=lambda i: hashlib.sha256(i.encode()).digest())}
        samples = [
            Sample(run.item, view, run.seed, index)
            for index, run in enumerate(self.runs)
            for view in range(self.crops[run.item].shape[0])
        ]
        self.train = [s for s in samples if s.item not in held]
        self.held_out = [s for s in samples if s.item in held]
        log(
            f"teacher data: {len(items)} inputs, {len(self.runs)} teacher runs; "
            f"{len(self.train)} training and {len(self.held_out)} held-out samples ({len(held)} inputs)"
        )

    @staticmethod
    def _key(item: str, view: int, seed: int) -> str:
        return f"{item}/{view}/{seed}"

    def _fit_poses(self, log: Callable[[str], None]) -> dict[str, Pose]:
        """Every view's pose for every run, from the cache or fitted now (and cached)."""
        path = self.store.root / POSES_FILE
        cached = json.loads(path.read_text()) if path.is_file() else {}
        poses, fitted = {}, 0
        for run in self.runs:
            crops = self.crops[run.item]
            solid = with_body(run.distance.float() / DISTANCE_SCALE) < 0
            base_color = run.attributes[:3].float() / 255
            for view in range(crops.shape[0]):
                key = self._key(run.item, view, run.seed)
                if key not in cached:
                    cached[key] = fit_pose(crops[view].float() / 255, solid, base_color).to_dict()
                    fitted += 1
                poses[key] = Pose.from_dict(cached[key])
        if fitted:
            write_json(path, cached)
            log(f"fitted the camera pose of {fitted} view(s)")
        return poses

    def pose(self, sample: Sample) -> Pose:
        return self.poses[self._key(sample.item, sample.view, sample.seed)]

    def crop(self, sample: Sample) -> torch.Tensor:
        """The student's input `[4, S, S]` (float, premultiplied) of a sample."""
        return self.crops[sample.item][sample.view].float() / 255

    def check_config(self, config: FresnelConfig) -> None:
        """The student must take this data's crops and structure noise."""
        wanted = (self.image_size, self.noise_channels, self.noise_resolution)
        if (config.image_size, config.noise_channels, config.noise_resolution) != wanted:
            raise ValueError(
                f"the teacher data needs a student with {self.image_size}^2 inputs and a {self.noise_channels}"
                f"-channel {self.noise_resolution}^3 noise input; this one has {config}"
            )

    def teacher_noise(
        self, samples: list[Sample], config: FresnelConfig, device: torch.device
    ) -> torch.Tensor:
        """The teacher's structure noise of each sample's seed, mapped into the student's frame."""
        poses = PoseBatch.of([self.pose(s) for s in samples], device)
        return student_noise(structure_noise([s.seed for s in samples], config).to(device), poses)

    def batch(
        self, samples: list[Sample], config: FresnelConfig, device: torch.device | str, mirrored: bool = False
    ) -> StepData:
        """The samples' inputs, the teacher's noise and targets, all in the student's grid, on `device`."""
        device = torch.device(device)
        runs = [self.runs[s.run] for s in samples]
        poses = PoseBatch.of([self.pose(s) for s in samples], device)
        distance = torch.stack([r.distance for r in runs]).to(device).float() / DISTANCE_SCALE
        attributes = torch.stack([r.attributes for r in runs]).to(device).float() / 255
        occupancy, voxels, attrs = student_targets(distance, attributes, poses, config.grid)
        noise = self.teacher_noise(samples, config, device)
        images = torch.stack([self.crop(s) for s in samples]).to(device)
        data = StepData(images, occupancy, voxels, attrs, poses.elevation.float(), noise)
        return data.mirrored() if mirrored else data
