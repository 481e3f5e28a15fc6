"""The student's training on the teacher's targets: `fresnel.training`'s loop, loss and run folder, fed by
`TeacherSteps`.

The student is the base checkpoint's network with a structure-noise input of the teacher's size
(`student_config`), started from the base's weights (`fresnel.checkpoint.init_weights_from`: the noise
projection starts at zero, so step 0 computes what the base computes). Batches are drawn from a fixed
permutation of the training samples per epoch, each batch also seen mirrored when `mirror_reuse` is set, so
a resumed run sees exactly the data it would have seen.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..config import FresnelConfig
from ..network import FresnelNet
from ..training import StepData, TrainSettings, loss_terms
from .dataset import Sample, TeacherDataset


def student_config(base: FresnelConfig, dataset: TeacherDataset) -> FresnelConfig:
    """The base network's sizes with a noise input for the teacher's structure noise."""
    return replace(base, noise_channels=dataset.noise_channels, noise_resolution=dataset.noise_resolution)


class TeacherSteps:
    """`fresnel.training.StepSource` over a dataset's training samples (module docstring)."""

    def __init__(
        self,
        dataset: TeacherDataset,
        config: FresnelConfig,
        settings: TrainSettings,
        device: torch.device,
        state: dict,
    ) -> None:
        if not dataset.train:
            raise ValueError("no training samples: every input is held out or failed")
        self.dataset, self.config, self.settings, self.device = dataset, config, settings, device
        self.step = state.get("step", 0)
        self.data_seconds = 0.0
        self._order: tuple[int, torch.Tensor] | None = None

    def _sample(self, position: int) -> Sample:
        """The `position`-th sample drawn (epoch after epoch, each a fixed permutation)."""
        epoch, index = divmod(position, len(self.dataset.train))
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.dataset.train), generator=generator))
        return self.dataset.train[int(self._order[1][index])]

    def next_step(self) -> StepData:
        started = time.monotonic()
        batch, mirrored = divmod(self.step, 2) if self.settings.mirror_reuse else (self.step, 0)
        size = self.settings.batch_size
        samples = [self._sample(batch * size + j) for j in range(size)]
        self.step += 1
        data = self.dataset.batch(samples, self.config, self.device, mirrored=bool(mirrored))
        self.data_seconds += time.monotonic() - started
        return data

    def take_data_seconds(self) -> float:
        spent, self.data_seconds = self.data_seconds, 0.0
        return spent

    def state_dict(self) -> dict:
        return {}  # the step (in the run's state) says where the data goes on


@torch.no_grad()
def mean_loss(
    model: FresnelNet,
    dataset: TeacherDataset,
    samples: list[Sample],
    device: torch.device | str,
    batch: int = 8,
) -> dict[str, float]:
    """`fresnel.training.loss_terms` of `model` averaged over `samples` (each weighted once)."""
    model.eval()
    totals: dict[str, float] = {}
    for start in range(0, len(samples), batch):
        part = samples[start : start + batch]
        data = dataset.batch(part, model.config, device)
        terms = loss_terms(model(data.images, data.noise), data)
        for key, value in terms.items():
            totals[key] = totals.get(key, 0.0) + float(value) * len(part)
    return {key: value / max(1, len(samples)) for key, value in totals.items()}
