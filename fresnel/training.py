"""Training Fresnel on procedural objects made on the fly (`fresnel.data`), resumable at any step.

Data comes in *chunks*: `data_chunk` batches' worth of objects are made in one call (making data is bound
by kernel launches, so a bigger call costs little more), and each object is seen twice, as rendered and
mirrored left to right (the image flipped and the grid's x axis with it: an exact copy of the mirrored
scene), so that making data takes a small share of each step.

A run lives in one folder: `state.pt` (network, optimiser, step, the data generator's state at the start
of the current chunk and the position in it, loss history, settings), `loss.json` and `loss.png`. Calling
`train` again on the folder continues exactly where it stopped, with the same data it would have seen.
`export_checkpoint` writes the engine's checkpoint (`config.json` + `model.safetensors`).

The loop takes its batches from a `StepSource`: `ProceduralSteps` by default, the teacher's targets in
`fresnel.distill`. `TrainSettings.depth_shift_voxels` lets each object's targets move along the depth axis
to where the prediction puts it (`loss_terms`); off (0) in the bundled checkpoint's training.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .checkpoint import init_weights_from, save_fresnel
from .config import FresnelConfig
from .data.batches import Batch, make_batch
from .data.scenes import MAX_PARTS, TRAIN_RULES, SceneRules
from .network import FresnelNet, FresnelOutput

STATE_FILE = "state.pt"
SURFACE_BAND_VOXELS = 2.5


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 24
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    weight_decay: float = 0.01
    warmup_steps: int = 300
    total_steps: int = 12000
    seed: int = 0
    render_resolution: int = 192
    render_steps: int = 40
    log_every: int = 25
    save_every_s: float = 60.0
    data_chunk: int = 4  # batches of objects made per data call
    mirror_reuse: bool = True  # train on every chunk a second time, mirrored
    depth_shift_voxels: int = 0  # each object's targets may move this far along the depth axis (`loss_terms`)
    max_parts: int = TRAIN_RULES.max_parts  # parts per object, up to (`training_rules`)


@dataclass
class StepData:
    """What one training step needs of a `Batch`: the network's input and its targets."""

    images: torch.Tensor
    occupancy: torch.Tensor
    distance: torch.Tensor
    attributes: torch.Tensor
    elevation: torch.Tensor
    noise: torch.Tensor | None = None  # [B, C, R, R, R] for a network with a noise input

    @classmethod
    def of(cls, batch: Batch) -> StepData:
        if batch.occupancy is None or batch.distance is None or batch.attributes is None:
            raise ValueError("a training step needs a batch made with its targets")
        return cls(batch.images, batch.occupancy, batch.distance, batch.attributes, batch.elevation)

    def part(self, index: int, size: int, mirrored: bool = False) -> StepData:
        """Objects `[index * size, (index + 1) * size)`, mirrored left to right if asked (image columns and
        grid x, which are the same axis: `fresnel.network.lift`)."""
        sl = slice(index * size, (index + 1) * size)
        part = StepData(
            self.images[sl],
            self.occupancy[sl],
            self.distance[sl],
            self.attributes[sl],
            self.elevation[sl],
            None if self.noise is None else self.noise[sl],
        )
        return part.mirrored() if mirrored else part

    def mirrored(self) -> StepData:
        """The same objects mirrored left to right: image columns, grid x (and the noise's x)."""
        return StepData(
            self.images.flip(3),
            self.occupancy.flip(1),
            self.distance.flip(1),
            self.attributes.flip(2),
            self.elevation,
            None if self.noise is None else self.noise.flip(2),
        )


def steps_per_chunk(settings: TrainSettings) -> int:
    return settings.data_chunk * (2 if settings.mirror_reuse else 1)


def chunk_part(settings: TrainSettings, position: int) -> tuple[int, bool]:
    """`(batch index, mirrored)` of the `position`-th step of a chunk: every batch as rendered, then mirrored."""
    return position % settings.data_chunk, position >= settings.data_chunk


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then cosine decay to `min_lr_fraction` at `total_steps` (and flat after)."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, settings.total_steps - settings.warmup_steps))
    floor = settings.min_lr_fraction
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def shift_depth(values: torch.Tensor, cells: int, dim: int, fill: float) -> torch.Tensor:
    """`values` moved `cells` cells along `dim` (towards higher indices when positive); the cells it leaves
    take `fill`."""
    if cells == 0:
        return values
    size = values.shape[dim]
    shape = list(values.shape)
    shape[dim] = min(abs(cells), size)
    pad = values.new_full(shape, fill)
    if cells > 0:
        return torch.cat([pad, values.narrow(dim, 0, size - shape[dim])], dim)
    return torch.cat([values.narrow(dim, shape[dim], size - shape[dim]), pad], dim)


def _surface_weight(distance: torch.Tensor) -> torch.Tensor:
    return 1.0 + 4.0 * (distance.abs() < SURFACE_BAND_VOXELS).float()


def best_depth_shifts(
    logits: torch.Tensor, occupancy: torch.Tensor, distance: torch.Tensor, most: int
) -> torch.Tensor:
    """`[B]` long: for each object, the shift of its targets along the depth axis (grid y, within `±most`
    cells) that the predicted occupancy `logits [B, G, G, G]` fits best, among equals the smallest. The fit
    is the surface-weighted BCE less the soft target's own entropy (a KL divergence, zero for a perfect
    match): the plain BCE would favour shifts that push the soft, heavily weighted surface cells out of the
    grid."""
    with torch.no_grad():
        logits = logits.float()
        best = torch.full((logits.shape[0],), math.inf, device=logits.device)
        shifts = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        for cells in sorted(range(-most, most + 1), key=abs):
            target = shift_depth(occupancy, cells, 2, 0.0)
            weight = _surface_weight(shift_depth(distance, cells, 2, float(distance.shape[2])))
            excess = F.binary_cross_entropy_with_logits(logits, target, reduction="none") - _entropy(target)
            loss = (weight * excess).mean(dim=(1, 2, 3))
            better = loss < best
            best = torch.where(better, loss, best)
            shifts = torch.where(better, torch.full_like(shifts, cells), shifts)
    return shifts


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Binary entropy (nats) of target probabilities `p`, 0 at 0 and 1."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


def loss_terms(out: FresnelOutput, batch: StepData | Batch, depth_shift: int = 0) -> dict[str, torch.Tensor]:
    """Occupancy BCE (weighted towards the surface), attribute L1 near the surface, elevation L1, and IoU.

    With `depth_shift > 0` each object's targets are first moved along the depth axis by the shift of at most
    that many cells that fits the prediction best (`best_depth_shifts`; its mean size is the term `shift`): the
    grid's depth centre is the object's bounding-box centre, which the image does not show, so the network
    need not hedge over where along its rays the object sits (the engine fits its output to the unit cube
    anyway)."""
    logits = out.occupancy_logits.float()
    occupancy_target, distance, attribute_target = batch.occupancy, batch.distance, batch.attributes
    extra = {}
    if depth_shift > 0:
        shifts = best_depth_shifts(logits, occupancy_target, distance, depth_shift)
        occupancy_target, distance, attribute_target = (
            torch.stack(
                [shift_depth(t[None], int(k), dim, fill)[0] for t, k in zip(values, shifts, strict=True)]
            )
            for values, dim, fill in (
                (occupancy_target, 2, 0.0),
                (distance, 2, float(distance.shape[2])),
                (attribute_target, 3, 0.0),
            )
        )
        extra["shift"] = shifts.abs().float().mean()
    band = distance.abs() < SURFACE_BAND_VOXELS
    occupancy = F.binary_cross_entropy_with_logits(logits, occupancy_target, weight=_surface_weight(distance))
    attr_error = (torch.sigmoid(out.attribute_logits.float()) - attribute_target).abs().mean(1)
    attributes = (attr_error * band).sum() / band.sum().clamp_min(1)
    elevation = (out.elevation.float() - batch.elevation).abs().mean()
    with torch.no_grad():
        pred, true = logits > 0, distance < 0
        iou = (pred & true).sum() / (pred | true).sum().clamp_min(1)
    total = occupancy + attributes + 0.5 * elevation
    return {
        "loss": total,
        "occupancy": occupancy,
        "attributes": attributes,
        "elevation": elevation,
        "iou": iou,
        **extra,
    }


def plot_curves(
    history: list[dict], path: Path, keys: tuple[str, ...] = ("occupancy", "attributes", "elevation", "iou")
) -> None:
    """A small PNG of the loss curves (one panel per key, step on x), drawn with Pillow."""
    width, height, pad = 300, 180, 28
    image = Image.new("RGB", (width * len(keys), height), "white")
    draw = ImageDraw.Draw(image)
    for i, key in enumerate(keys):
        points = [(h["step"], h[key]) for h in history if key in h]
        x0 = i * width
        draw.text((x0 + pad, 4), key, fill="black")
        draw.rectangle([x0 + pad, pad, x0 + width - 8, height - pad], outline="grey")
        if len(points) < 2:
            continue
        steps, values = zip(*points, strict=True)
        lo, hi = min(values), max(values)
        span_s, span_v = max(1, steps[-1] - steps[0]), max(1e-9, hi - lo)
        xy = [
            (
                x0 + pad + (s - steps[0]) / span_s * (width - pad - 8),
                height - pad - (v - lo) / span_v * (height - 2 * pad),
            )
            for s, v in points
        ]
        draw.line(xy, fill="navy", width=1)
        draw.text((x0 + 2, pad - 2), f"{hi:.3g}", fill="black")
        draw.text((x0 + 2, height - pad - 8), f"{lo:.3g}", fill="black")
        draw.text((x0 + width - 60, height - pad + 4), f"step {steps[-1]}", fill="black")
    image.save(path)


def _save_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run_dir / STATE_FILE)
    (run_dir / "loss.json").write_text(json.dumps(state["history"]))
    plot_curves(state["history"], run_dir / "loss.png")


class StepSource(Protocol):
    """Where a run's batches come from: one `StepData` per step, and what a resumed run needs to go on with
    the same data (saved in `state.pt` beside the network's state)."""

    def next_step(self) -> StepData: ...

    def take_data_seconds(self) -> float:
        """Seconds spent making data since the last call (0.0 when none was made)."""
        ...

    def state_dict(self) -> dict: ...


SourceFactory = Callable[[FresnelConfig, TrainSettings, torch.device, dict], StepSource]


def training_rules(settings: TrainSettings) -> SceneRules:
    """The composition rules a run trains on: `TRAIN_RULES` with the run's largest number of parts."""
    if not TRAIN_RULES.min_parts <= settings.max_parts <= MAX_PARTS:
        raise ValueError(f"max_parts must lie in {TRAIN_RULES.min_parts}..{MAX_PARTS}")
    return replace(TRAIN_RULES, max_parts=settings.max_parts)


class ProceduralSteps:
    """Chunks of procedural objects (`fresnel.data`), each batch seen as rendered and then mirrored. Resumes
    at any step: the saved state is the generator's state at the start of the current chunk and the position
    in it, so a resumed run makes the same chunk again and goes on where it stopped."""

    def __init__(self, config: FresnelConfig, settings: TrainSettings, device: torch.device, state: dict):
        self.config, self.settings, self.device = config, settings, device
        self.generator = torch.Generator(device=device)
        if "generator" in state:
            self.generator.set_state(state["generator"])
        else:
            self.generator.manual_seed(settings.seed)
        self.position = state.get("chunk_position", 0)  # steps already taken from the current chunk
        self.chunk_state = self.generator.get_state()  # the generator's state before the current chunk
        self.chunk: StepData | None = None
        self.data_seconds = 0.0

    def next_step(self) -> StepData:
        settings = self.settings
        if self.position >= steps_per_chunk(settings):
            self.position, self.chunk, self.chunk_state = 0, None, self.generator.get_state()
        if self.chunk is None:
            started = time.monotonic()
            with torch.no_grad():
                self.chunk = StepData.of(
                    make_batch(
                        settings.batch_size * settings.data_chunk,
                        self.generator,
                        grid=self.config.grid,
                        image_size=self.config.image_size,
                        rules=training_rules(settings),
                        device=self.device,
                        render_steps=settings.render_steps,
                        render_resolution=settings.render_resolution,
                    )
                )
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.data_seconds += time.monotonic() - started
        index, mirrored = chunk_part(settings, self.position)
        self.position += 1
        return self.chunk.part(index, settings.batch_size, mirrored)

    def take_data_seconds(self) -> float:
        spent, self.data_seconds = self.data_seconds, 0.0
        return spent

    def state_dict(self) -> dict:
        finished = self.position >= steps_per_chunk(self.settings)  # then the next chunk starts from here
        return {
            "generator": self.generator.get_state() if finished else self.chunk_state,
            "chunk_position": 0 if finished else self.position,
        }


def train(
    run_dir: Path,
    config: FresnelConfig | None = None,
    settings: TrainSettings | None = None,
    device: torch.device | str = "cpu",
    max_steps: int | None = None,
    max_minutes: float | None = None,
    log: Callable[[str], None] = print,
    init_from: Path | None = None,
    *,
    source: SourceFactory = ProceduralSteps,
) -> dict:
    """Train (or resume) the run in `run_dir` on the batches of `source` (procedural objects by default) until
    `max_steps` total steps or `max_minutes` of this call.

    A new run needs `config` and `settings` (and may start from the weights of the engine checkpoint
    `init_from`, `checkpoint.init_weights_from`); a resumed one keeps its own (arguments are ignored)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    state_path = run_dir / STATE_FILE
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        config = FresnelConfig.from_dict(state["config"])
        settings = TrainSettings(**state["settings"])
        log(f"resuming {run_dir} at step {state['step']}")
    else:
        config, settings = config or FresnelConfig(), settings or TrainSettings()
        state = {
            "step": 0,
            "history": [],
            "config": json.loads(config.to_json()),
            "settings": asdict(settings),
            "seconds": 0.0,
        }
    data = source(config, settings, device, state)
    with torch.random.fork_rng(devices=[]):  # a new run's initial weights follow its seed too
        torch.manual_seed(settings.seed)
        model = FresnelNet(config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99)
    )
    if "model" in state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    elif init_from is not None:
        new = init_weights_from(model, init_from)
        log(f"starting from the weights of {init_from}" + (f" (new: {', '.join(new)})" if new else ""))
    model.train()
    use_bf16 = device.type == "cuda"
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: let cuDNN pick its fastest kernels
    started = last_save = time.monotonic()
    seconds_before = state["seconds"]
    running: dict[str, float] = {}

    def snapshot() -> None:
        state.update(
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            seconds=seconds_before + time.monotonic() - started,
            **data.state_dict(),
        )
        _save_state(run_dir, state)

    while True:
        step = state["step"]
        if max_steps is not None and step >= max_steps:
            break
        if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        batch = data.next_step()
        spent = data.take_data_seconds()
        if spent:
            running["data_s"] = running.get("data_s", 0.0) + spent
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(batch.images, batch.noise)
        terms = loss_terms(out, batch, settings.depth_shift_voxels)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] = step + 1
        for key, value in terms.items():
            running[key] = running.get(key, 0.0) + float(value.detach())
        if state["step"] % settings.log_every == 0:
            entry = {
                "step": state["step"],
                "seconds": round(seconds_before + time.monotonic() - started, 1),
                "lr": learning_rate(settings, step),
            }
            entry.update({k: round(v / settings.log_every, 5) for k, v in running.items()})
            state["history"].append(entry)
            running.clear()
            log(json.dumps(entry))
        if time.monotonic() - last_save > settings.save_every_s:
            snapshot()
            last_save = time.monotonic()
    snapshot()
    return state


def export_checkpoint(run_dir: Path, out_dir: Path) -> FresnelNet:
    """Write the run's network as an engine checkpoint folder (`config.json` + fp16 `model.safetensors`)."""
    state = torch.load(Path(run_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    model = FresnelNet(FresnelConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    save_fresnel(model, out_dir)
    return model
