"""Input images: decoded once at upload (limits, bomb protection), stored as PNG, re-read by the worker."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from .errors import ApiError
from .files import PREVIEW_FILE, JobFolders
from .store import Job

PREVIEW_SIZE = 256


class ImageDecodeError(ValueError):
    """Raised by `basic_open_image` (used only when the pipeline's image loader cannot be imported)."""


def basic_open_image(data: bytes, name: str) -> Image.Image:
    """Pillow decode to RGB/RGBA with EXIF rotation; a plain fallback for the pipeline's `open_image`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ImageDecodeError(f"{name}: not a readable image, or a damaged one ({exc})") from exc
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def image_loader():
    """The pipeline's robust loader (16-bit, CMYK, palette, ...) and its error type, or the fallback;
    the server must start even when the engine package is broken (its status then says why)."""
    try:
        from trellis2.pipelines.image_loading import ImageInputError, open_image

        return open_image, ImageInputError
    except Exception:  # noqa: BLE001
        return basic_open_image, ImageDecodeError


def input_name(index: int) -> str:
    return f"input_{index}.png"


def decode_upload(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Bytes from the client → an RGB/RGBA image, or a 400/413 `ApiError` that says what is wrong.
    The pixel count is checked from the header before any pixel is decoded."""
    if not data:
        raise ApiError("empty_file", f"{label} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))
            width, height = header.size
    except Exception:  # noqa: BLE001 - whatever Pillow says, the answer is "not an image"
        header = None
    if header is not None and width * height > max_pixels:
        raise ApiError(
            "image_too_large",
            f"{label} has {width}x{height} pixels; the limit is {max_pixels:,} pixels. Please downscale it.",
        )
    open_image, error_type = image_loader()
    try:
        return open_image(data, name=label)
    except error_type as exc:
        raise ApiError("invalid_image", str(exc)) from exc


def store_inputs(folders: JobFolders, job_id: str, images: list[Image.Image]) -> list[str]:
    """Write the decoded inputs as PNG plus a small preview; returns the stored names."""
    names = []
    for i, image in enumerate(images):
        name = input_name(i)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        folders.write_bytes(job_id, name, buf.getvalue())
        names.append(name)
    preview = images[0].copy()
    preview.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    buf = io.BytesIO()
    preview.save(buf, format="PNG")
    folders.write_bytes(job_id, PREVIEW_FILE, buf.getvalue())
    return names + [PREVIEW_FILE]


def load_job_images(folders: JobFolders, job: Job) -> list[Image.Image]:
    """The job's stored inputs (not the preview), decoded again with the same checks."""
    open_image, _ = image_loader()
    return [
        open_image(folders.path(job.id, name).read_bytes(), name=name)
        for name in job.inputs
        if name.startswith("input_")
    ]
