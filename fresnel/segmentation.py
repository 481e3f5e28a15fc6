"""Background removal that needs no download: plain backgrounds, from the border colour, refined by GrabCut.

Used for opaque images when no background-removal model is installed. A photo whose border is not one
plain colour, or in which no single object stands out, is refused with a message that suggests a
transparent PNG — a wrong cut-out would only make a wrong model.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from trellis2.pipelines.image_loading import ImageInputError

WORK_SIDE = 512  # GrabCut runs on a copy at most this large
BORDER_FRACTION = 0.03
PLAIN_TOLERANCE = 18.0  # Lab distance within which a border pixel counts as background colour
PLAIN_SHARE = 0.8  # at least this share of the border must be background colour
NOT_SEPARABLE = (
    "no single object could be separated from the background{why}. Use a PNG with a transparent "
    "background, or install a background-removal model (Models panel / `genesis models`)."
)


def _largest_components(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component and any other at least a tenth of its size."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.1 * areas.max()) + 1
    return np.isin(labels, keep)


def remove_plain_background(image: Image.Image) -> Image.Image:
    """RGB image on a plain background -> RGBA with the object's mask as alpha (same size)."""
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    sh, sw = small.shape[:2]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    band = max(2, round(BORDER_FRACTION * min(sh, sw)))
    border = np.zeros((sh, sw), dtype=bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    background = np.median(lab[border], axis=0)
    distance = np.linalg.norm(lab - background, axis=-1)
    if np.mean(distance[border] < PLAIN_TOLERANCE) < PLAIN_SHARE:
        raise ImageInputError(NOT_SEPARABLE.format(why=": the background is not a plain colour"))
    mask = np.full((sh, sw), cv2.GC_PR_BGD, dtype=np.uint8)
    mask[distance > 2 * PLAIN_TOLERANCE] = cv2.GC_PR_FGD
    mask[border & (distance < PLAIN_TOLERANCE)] = cv2.GC_BGD
    if np.count_nonzero(mask == cv2.GC_PR_FGD) < 16:
        raise ImageInputError(NOT_SEPARABLE.format(why=": the image shows only background"))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    foreground = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    foreground = _largest_components(foreground)
    share = foreground.mean()
    if share < 0.002 or share > 0.9:
        raise ImageInputError(NOT_SEPARABLE.format(why=": the object is too small or fills the whole image"))
    alpha = cv2.GaussianBlur(foreground.astype(np.float32), (3, 3), 0)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.convert("RGB")
    out.putalpha(Image.fromarray((np.clip(alpha, 0, 1) * 255).astype(np.uint8), "L"))
    return out
