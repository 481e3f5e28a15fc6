"""Membership and position of int64 keys in a sorted key array (the sparse grids' hash-map stand-in)."""

from __future__ import annotations

import torch


def lookup_sorted(sorted_keys: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(pos, found)`: where each key sits in ascending `sorted_keys`, and whether it is there."""
    pos = torch.searchsorted(sorted_keys, keys).clamp_max(max(sorted_keys.numel() - 1, 0))
    return pos, sorted_keys.index_select(0, pos.reshape(-1)).reshape(pos.shape) == keys
