"""3-D rotary position embedding (interleaved channel pairs), as used by the TRELLIS.2 DiTs.

For a head dimension `D` each of the three axes gets `D // 2 // 3` frequencies
`base[0] / base[1] ** (j / n)`; a token at integer position `(x, y, z)` gets the phase vector
`[x * freqs, y * freqs, z * freqs]`, padded with zero phases to `D / 2`. Channel pairs
`(2p, 2p + 1)` of every head are rotated as the complex number `d_2p + i d_2p+1` by phase `p`.
Phases are complex64 `[..., D / 2]`; rotation is computed in float32 and rounded back.
"""

from __future__ import annotations

import torch

DEFAULT_ROPE_FREQ: tuple[float, float] = (1.0, 10000.0)


class RotaryPositionEmbedder:
    """Turns integer positions `[..., dim]` into complex phases `[..., head_dim // 2]`."""

    def __init__(
        self, head_dim: int, dim: int = 3, rope_freq: tuple[float, float] = DEFAULT_ROPE_FREQ
    ) -> None:
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.dim = dim
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))
        self.freq_dim = head_dim // 2 // dim
        if self.freq_dim == 0:
            raise ValueError(f"head dimension {head_dim} is too small for {dim}-D RoPE")

    @property
    def cache_key(self) -> str:
        """Identifies these phases in a `SparseTensor.spatial_cache`."""
        return f"rope_phases_d{self.head_dim}_n{self.dim}_f{self.rope_freq[0]}_{self.rope_freq[1]}"

    def frequencies(self, device: torch.device | None = None) -> torch.Tensor:
        exponent = torch.arange(self.freq_dim, dtype=torch.float32, device=device) / self.freq_dim
        return self.rope_freq[0] / (self.rope_freq[1] ** exponent)

    def phases(self, positions: torch.Tensor) -> torch.Tensor:
        """Complex64 phases `[..., head_dim // 2]` for positions `[..., dim]`."""
        if positions.shape[-1] != self.dim:
            raise ValueError(f"positions must end in {self.dim} coordinates, got {tuple(positions.shape)}")
        freqs = self.frequencies(positions.device)
        angles = (positions.float()[..., :, None] * freqs).flatten(-2)  # axis-major: x block, y, z
        pad = self.head_dim // 2 - angles.shape[-1]
        if pad:
            angles = torch.cat([angles, angles.new_zeros(*angles.shape[:-1], pad)], dim=-1)
        return torch.polar(torch.ones_like(angles), angles)

    def grid_phases(self, resolution: int, device: torch.device | None = None) -> torch.Tensor:
        """Phases of a dense `R^dim` grid in row-major (`x * R * R + y * R + z`) token order."""
        axes = [torch.arange(resolution, device=device)] * self.dim
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, self.dim)
        return self.phases(grid)


def apply_rotary(x: torch.Tensor, phases: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate `x [..., heads, head_dim]` by `phases [..., head_dim // 2]` (shared by all heads).

    `phases` may also be `(cos, sin)` float32 tensors (see `rotary_cos_sin`): the same products in
    real arithmetic, for compilers that do not handle complex tensors.
    """
    if isinstance(phases, tuple):
        return apply_rotary_real(x, *phases)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rotated = torch.view_as_real(pairs * phases.unsqueeze(-2))
    return rotated.reshape(x.shape).to(x.dtype)


def rotary_cos_sin(phases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex phases -> `(cos, sin)` float32 tensors of the same shape."""
    return phases.real.contiguous(), phases.imag.contiguous()


def apply_rotary_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rotary` with phases as `cos, sin [..., head_dim // 2]`: `(a, b) -> (a c - b s, a s + b c)`."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    c, s = cos.unsqueeze(-2), sin.unsqueeze(-2)
    rotated = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return rotated.reshape(x.shape).to(x.dtype)
