"""Official image preprocessing (spec §9.3): cut out the object, centre it in a square crop and
premultiply by alpha onto black."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from .image_loading import ImageInputError, has_real_alpha, normalize_image

MAX_SIDE = 1024
ALPHA_THRESHOLD = 0.8 * 255  # foreground pixels have alpha strictly above this


def limit_size(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Downscale (Lanczos) so that the longer side is at most `max_side`; never upscale."""
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        image = image.resize((int(width * scale), int(height * scale)), Image.Resampling.LANCZOS)
    return image


def foreground_crop_box(alpha: np.ndarray) -> tuple[float, float, float, float]:
    """Square box centred on the bounding box of pixels with alpha > 204 (unrounded, may leave the image)."""
    rows, cols = np.nonzero(alpha > ALPHA_THRESHOLD)
    if rows.size == 0:
        raise ImageInputError(
            "no foreground object found: the image is fully transparent (or the background remover "
            "found nothing); use an image with a visible object"
        )
    x0, x1, y0, y1 = int(cols.min()), int(cols.max()), int(rows.min()), int(rows.max())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) // 2
    return (cx - half, cy - half, cx + half, cy + half)


def premultiply_on_black(rgba: Image.Image) -> Image.Image:
    """`uint8(rgb/255 * alpha/255 * 255)` with truncation, as the official code does."""
    pixels = np.asarray(rgba, dtype=np.float32) / np.float32(255)
    rgb = pixels[:, :, :3] * pixels[:, :, 3:4]
    return Image.fromarray((rgb * np.float32(255)).astype(np.uint8), "RGB")


def preprocess_image(
    image: Image.Image,
    remove_background: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """RGBA with real transparency is used as is; anything else goes through `remove_background`
    (RGB in, RGBA out). Returns the square, premultiplied RGB image the conditioning model sees."""
    image = normalize_image(image)
    image = limit_size(image)
    if has_real_alpha(image):
        rgba = image
    else:
        if remove_background is None:
            raise ImageInputError("the image has no transparency and no background remover is available")
        rgba = remove_background(image.convert("RGB"))
        if rgba.mode != "RGBA" or rgba.size != image.size:
            raise RuntimeError("the background remover must return an RGBA image of the input's size")
    box = foreground_crop_box(np.asarray(rgba.getchannel("A")))
    cropped = rgba.crop(tuple(round(v) for v in box))  # round-half-to-even, as PIL does itself
    return premultiply_on_black(cropped)
