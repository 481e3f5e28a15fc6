"""Decoding user images robustly: every odd file becomes an 8-bit RGB or RGBA image or a clear error.

Handles empty and truncated files, decompression bombs (checked from the header, before any pixel
is decoded), 16-bit and 32-bit PNG/TIFF, palette images with transparency, grayscale (with or
without alpha), CMYK and YCbCr JPEGs, EXIF rotation and animated files (first frame).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # 64 megapixels (e.g. 8192 x 8192)
MIN_IMAGE_SIDE = 16


class ImageInputError(ValueError):
    """An input image that cannot be used; the message says why in plain words."""


def open_image(source: str | os.PathLike | bytes | io.IOBase, name: str | None = None) -> Image.Image:
    """Read a file path, bytes or binary stream into a normalised RGB or RGBA `PIL.Image`."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the image")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageInputError(f"{label}: file not found")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = source.read()
    if len(data) == 0:
        raise ImageInputError(f"{label}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_image_size(image.size, label)
            image.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(f"{label}: the image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageInputError(
            f"{label}: not a readable image (supported: PNG, JPEG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{label}: the image file is damaged or truncated ({exc})") from exc
    return normalize_image(image, label)


def check_image_size(size: tuple[int, int], label: str = "the image") -> None:
    """Reject images too small to hold an object or too large to decode safely."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"{label}: {width}x{height} pixels is too large (limit {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels); please downscale it"
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageInputError(
            f"{label}: {width}x{height} pixels is too small (each side needs at least {MIN_IMAGE_SIDE} pixels)"
        )


def normalize_image(image: Image.Image, label: str = "the image") -> Image.Image:
    """Any PIL mode -> 8-bit `RGB` (opaque) or `RGBA` (when the image carries transparency)."""
    check_image_size(image.size, label)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a good image unusable
        pass
    try:
        return _convert(image)
    except (ValueError, OSError) as exc:
        raise ImageInputError(f"{label}: unsupported pixel format {image.mode!r} ({exc})") from exc


def _convert(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image.copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
    if mode in ("P", "L", "1") and "transparency" in image.info:
        return image.convert("RGBA")
    if mode == "La":  # premultiplied grey + alpha: un-premultiply first
        image, mode = image.convert("LA"), "LA"
    if mode in ("LA", "PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "LAB":
        from PIL import ImageCms

        return ImageCms.applyTransform(
            image,
            ImageCms.buildTransform(
                ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
            ),
        )
    return image.convert("RGBA") if "A" in mode else image.convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Rescale 16-bit / 32-bit integer or float pixels to 0..255."""
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64))
    peak = float(values.max()) if values.size else 0.0
    if peak > 255.0:
        values = values / (65535.0 if peak <= 65535.0 else peak) * 255.0
    elif is_float and peak <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def has_real_alpha(image: Image.Image) -> bool:
    """True for an RGBA image whose alpha channel is not fully opaque everywhere."""
    if image.mode != "RGBA":
        return False
    low, _ = image.getchannel("A").getextrema()
    return low < 255
