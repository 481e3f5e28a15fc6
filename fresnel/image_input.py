"""The image the network sees: the object cut out, centred in a square crop, premultiplied, with its alpha.

One function, `crop_to_object`, serves the training renders (batched, on the GPU) and the engine's input
(one photo), so the network sees the same framing in both. The crop box follows TRELLIS.2's preprocessing:
the bounding box of pixels with alpha above 0.8, made square around its centre.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ALPHA_THRESHOLD = 0.8  # as trellis2.pipelines.preprocess: foreground pixels have alpha strictly above this


def foreground_boxes(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(boxes [B, 3] = (cx, cy, half), found [B] bool)` in pixel-edge units from `alpha [B, H, W]` in [0, 1].

    Where no pixel passes the threshold the box falls back to pixels above 0.1 (faint objects)."""
    b, h, w = alpha.shape
    boxes, found = [], []
    for threshold in (ALPHA_THRESHOLD, 0.1):
        mask = alpha > threshold
        rows, cols = mask.any(dim=2), mask.any(dim=1)
        r_idx = torch.arange(h, device=alpha.device)
        c_idx = torch.arange(w, device=alpha.device)
        y0 = torch.where(rows, r_idx, h).min(dim=1).values
        y1 = torch.where(rows, r_idx, -1).max(dim=1).values
        x0 = torch.where(cols, c_idx, w).min(dim=1).values
        x1 = torch.where(cols, c_idx, -1).max(dim=1).values
        half = torch.div(torch.maximum(x1 - x0, y1 - y0), 2, rounding_mode="floor").clamp_min(1)
        boxes.append(torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, half.float()], -1).float())
        found.append(rows.any(dim=1))
    use_first = found[0]
    return torch.where(use_first[:, None], boxes[0], boxes[1]), found[0] | found[1]


def crop_to_object(rgba: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`rgba [B, 4, H, W]` (straight alpha, [0, 1]) -> `(crops [B, 4, size, size], boxes [B, 3], found [B])`.

    Crops hold premultiplied RGB and alpha; outside the image is transparent black. Each crop is sampled at
    twice its size and averaged down; an image much larger than the crop is first reduced (antialiased)."""
    boxes, found = foreground_boxes(rgba[:, 3])
    premultiplied = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
    _, _, h, w = rgba.shape
    reduce = float((2 * size / (2 * boxes[:, 2])).max().clamp_max(1.0))
    if reduce < 0.75:  # a large photo: reduce it first so that bilinear sampling does not alias
        new_h, new_w = max(1, round(h * reduce)), max(1, round(w * reduce))
        premultiplied = F.interpolate(
            premultiplied, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
        scale_xy = torch.tensor([new_w / w, new_h / h], device=rgba.device)
        boxes_px = torch.cat([boxes[:, :2] * scale_xy, boxes[:, 2:] * scale_xy[0]], dim=1)
        h, w = new_h, new_w
    else:
        boxes_px = boxes
    fine = 2 * size
    t = (torch.arange(fine, device=rgba.device, dtype=torch.float32) + 0.5) / fine * 2 - 1
    cx, cy, half = boxes_px[:, 0, None], boxes_px[:, 1, None], boxes_px[:, 2, None]
    gx = ((cx + half * t) / w * 2 - 1)[:, None, :].expand(-1, fine, -1)
    gy = ((cy + half * t) / h * 2 - 1)[:, :, None].expand(-1, -1, fine)
    grid = torch.stack([gx, gy], dim=-1)
    crops = F.grid_sample(premultiplied, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(crops, 2), boxes, found


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image with a (real) alpha channel -> `[1, 4, H, W]` float in [0, 1], straight alpha."""
    array = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
