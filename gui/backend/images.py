"""Input images: decoded once at upload (limits, bomb protection), stored as PNG, re-read by the worker."""

from __future__ import annotations

import io
import warnings

from PIL import Image

from trellis2.pipelines.image_loading import ImageInputError, open_image

from .errors import ApiError
from .files import JobFolders
from .store import Job

PREVIEW_FILE = "preview.png"
PREVIEW_SIZE = 256


def input_name(index: int) -> str:
    return f"input_{index}.png"


def decode_upload(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Bytes from the client → an RGB/RGBA image, or a 400/413 `ApiError` that says what is wrong.
    The pixel count is checked from the header before any pixel is decoded."""
    if not data:
        raise ApiError(400, "empty_file", f"{label} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))
            width, height = header.size
    except Exception:  # noqa: BLE001 - whatever Pillow says, the answer is "not an image"
        header = None
    if header is not None and width * height > max_pixels:
        raise ApiError(413, "image_too_large",
                       f"{label} has {width}x{height} pixels; the limit is {max_pixels:,} pixels. Please downscale it.")
    try:
        return open_image(data, name=label)
    except ImageInputError as exc:
        raise ApiError(400, "invalid_image", str(exc)) from exc


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
    return [open_image(folders.path(job.id, name).read_bytes(), name=name)
            for name in job.inputs if name.startswith("input_")]
