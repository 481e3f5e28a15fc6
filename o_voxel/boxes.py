"""Enumerating the integer points of many small boxes at once, in memory-bounded chunks."""

from __future__ import annotations

import numpy as np
import torch

CANDIDATE_BUDGET = {"cuda": 1 << 22}  # (box, point) pairs materialised at once, per device type
CPU_CANDIDATE_BUDGET = 1 << 16  # small on CPUs so temporaries stay in cache


def default_budget(device: torch.device) -> int:
    return CANDIDATE_BUDGET.get(device.type, CPU_CANDIDATE_BUDGET)


def enumerate_boxes(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All integer points of the boxes `[lo, hi]` (inclusive, (M, k)): (box index (P,), point (P, k))."""
    extent = (hi - lo + 1).clamp(min=0)
    counts = extent.prod(-1)
    owner = torch.repeat_interleave(torch.arange(lo.shape[0], device=lo.device), counts)
    if owner.numel() == 0:
        return owner, lo.new_zeros((0, lo.shape[1]))
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(owner.numel(), device=lo.device) - starts[owner]
    ext = extent[owner]
    point = torch.empty_like(ext)
    for axis in range(lo.shape[1] - 1, -1, -1):
        point[:, axis] = local % ext[:, axis]
        local = local // ext[:, axis]
    return owner, lo[owner] + point


def chunks_by_budget(counts: torch.Tensor, budget: int | None = None) -> list[tuple[int, int]]:
    """Split `range(len(counts))` into consecutive pieces whose summed counts stay near `budget`."""
    budget = budget or default_budget(counts.device)
    total = torch.cumsum(counts.to(torch.int64), 0).cpu().numpy()
    ranges, start = [], 0
    while start < len(total):
        base = total[start - 1] if start > 0 else 0
        end = max(int(np.searchsorted(total, base + budget, side="right")), start + 1)
        ranges.append((start, end))
        start = end
    return ranges
