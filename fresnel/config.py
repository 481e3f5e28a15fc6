"""The Fresnel network's configuration: every size the checkpoint depends on, stored as `config.json`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE = "FresnelNet"
ATTRIBUTE_CHANNELS = 6  # base colour (3), metallic, roughness, alpha: o_voxel.asset.PBR_LAYOUT


@dataclass(frozen=True)
class FresnelConfig:
    """Sizes of `fresnel.network.FresnelNet`.

    The image encoder halves the resolution `len(encoder_channels)` times; the 3D decoder starts at the
    coarsest image level (`image_size / 2**len(encoder_channels)` voxels a side) and doubles up to `grid`;
    `decoder_channels[i]` and `decoder_blocks[i]` belong to the i-th 3D level, coarse to fine.

    `noise_channels` and `noise_resolution` (both 0: off, as in the bundled checkpoint) give the network a
    second input, the sparse-structure flow's initial noise of TRELLIS.2 (`fresnel.network.structure_noise`),
    added to the 3D level whose grid is `noise_resolution` voxels a side: a student distilled from TRELLIS.2
    is given the teacher's noise, so that it learns one answer per seed (`fresnel.distill`).

    `top_down` and `depth_lifting` (both off in the bundled checkpoint) are two additions to the lifting,
    each starting at zero so that a network grown from a checkpoint computes what it does
    (`fresnel.checkpoint.init_weights_from`): `top_down` gives every image level the coarser levels'
    features (a top-down path), `depth_lifting` lets every image level place its features along each
    pixel's ray by a predicted distribution over the level's depth cells (`fresnel.network`)."""

    image_size: int = 128
    grid: int = 64
    encoder_channels: tuple[int, ...] = (32, 64, 128, 192)
    decoder_channels: tuple[int, ...] = (160, 96, 48, 24)
    decoder_blocks: tuple[int, ...] = (2, 2, 1, 1)
    groups: int = 8
    noise_channels: int = 0
    noise_resolution: int = 0
    top_down: bool = False
    depth_lifting: bool = False
    architecture: str = field(default=ARCHITECTURE)

    def __post_init__(self) -> None:
        levels = len(self.encoder_channels)
        if len(self.decoder_channels) != levels or len(self.decoder_blocks) != levels:
            raise ValueError("encoder_channels, decoder_channels and decoder_blocks need one entry per level")
        if self.image_size % 2**levels or self.image_size // 2 != self.grid:
            raise ValueError(
                "the grid must be half the image size, and the image size divisible by 2**levels"
            )
        if any(c % self.groups for c in (*self.encoder_channels, *self.decoder_channels)):
            raise ValueError(f"every channel count must be divisible by groups={self.groups}")
        if self.architecture != ARCHITECTURE:
            raise ValueError(f"not a Fresnel configuration (architecture {self.architecture!r})")
        if (self.noise_channels > 0) != (self.noise_resolution > 0):
            raise ValueError("noise_channels and noise_resolution are both set (a noise input) or both 0")
        if self.noise_resolution and self.noise_resolution not in self.level_sizes:
            raise ValueError(
                f"noise_resolution {self.noise_resolution} is not the size of a 3D level {self.level_sizes}"
            )

    @property
    def coarse_grid(self) -> int:
        return self.grid // 2 ** (len(self.decoder_channels) - 1)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Voxels a side of each 3D level, coarse to fine."""
        return tuple(self.coarse_grid * 2**i for i in range(len(self.decoder_channels)))

    @property
    def noise_level(self) -> int | None:
        """The 3D level that takes the noise input (None without one)."""
        return self.level_sizes.index(self.noise_resolution) if self.noise_resolution else None

    def grows(self, base: FresnelConfig) -> bool:
        """Whether this configuration is `base` plus only additions that can start at zero
        (`fresnel.checkpoint.init_weights_from`): the same sizes, at least `base`'s residual blocks per level,
        and every lifting addition and noise input that `base` has."""
        plain = dict(noise_channels=0, noise_resolution=0, top_down=False, depth_lifting=False)
        same = replace(self, **plain, decoder_blocks=base.decoder_blocks) == replace(base, **plain)
        blocks = all(n >= b for n, b in zip(self.decoder_blocks, base.decoder_blocks, strict=True))
        lifting = (self.top_down or not base.top_down) and (self.depth_lifting or not base.depth_lifting)
        noise = base.noise_channels == 0 or (self.noise_channels, self.noise_resolution) == (
            base.noise_channels,
            base.noise_resolution,
        )
        return same and blocks and lifting and noise

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> FresnelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Fresnel configuration keys: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> FresnelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the Fresnel configuration {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a JSON object")
        return cls.from_dict(data)


TINY_CONFIG = FresnelConfig(
    image_size=32,
    grid=16,
    encoder_channels=(8, 16),
    decoder_channels=(16, 8),
    decoder_blocks=(1, 1),
    groups=4,
)
