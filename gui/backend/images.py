"""Input images: decoded once at upload, stored as PNG, re-read by the worker.

Only Pillow's PNG, JPEG and WebP decoders ever see an upload (never EPS/PostScript, which Pillow hands
to Ghostscript, nor any other plugin); the pixel count is checked from the header before a pixel is
decoded; decoded pixels in flight are bounded by a byte budget shared by all requests, and a request
decodes and stores its images one at a time.
"""

from __future__ import annotations

import ctypes
import io
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ApiError
from .files import PREVIEW_FILE, JobFolders, check_space
from .store import Job

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")  # Pillow plugin names; the renderer's file picker matches
STORED_FORMAT = "PNG"
STORED_BYTES_PER_PIXEL = 4  # at most, for the stored PNG (fast compression) of an RGBA input
PREVIEW_SIZE = 256
# what one decoded pixel may cost while it is normalised (decoded, converted, EXIF-rotated copies; a 16-bit
# grey PNG goes through float64): the budget below reserves this much per pixel before decoding
DECODE_BYTES_PER_PIXEL = 16
FULL_SIZE_DECODES = 2  # the shared budget holds this many images of the maximum size at once
DECODE_WAIT_S = 60.0  # a request waits this long for budget before it is told the server is busy
M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD_BYTES = 2**20  # blocks this large and larger are mapped on their own, and unmapped when freed
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 2**20  # text chunks kept per PNG (Pillow's default is 64 MiB)


class ImageDecodeError(ValueError):
    """Raised by `basic_normalize` (used only when the pipeline's image loader cannot be imported)."""


def basic_normalize(image: Image.Image, name: str) -> Image.Image:
    """RGB/RGBA with EXIF rotation; a plain fallback for the pipeline's `normalize_image`."""
    try:
        image = ImageOps.exif_transpose(image)
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: unsupported pixel format ({exc})") from exc


def normalizer():
    """The pipeline's normaliser (16-bit, CMYK, palette, size limits, ...) and its error type, or the
    fallback; the server must start even when the engine package is broken (its status then says why)."""
    try:
        from trellis2.pipelines.image_loading import ImageInputError, normalize_image

        return normalize_image, ImageInputError
    except Exception:  # noqa: BLE001
        return basic_normalize, ImageDecodeError


def return_freed_pixels_to_the_system() -> bool:
    """Make glibc give large freed blocks (decoded images) back at once: without a fixed mmap threshold it
    keeps them in per-thread arenas, and a burst of uploads leaves the server hundreds of MB larger."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


class DecodeBudget:
    """Bytes of decoded pixels that all requests together may hold; `reserve` waits for room."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.peak = 0
        self._room = threading.Condition()

    @classmethod
    def for_pixels(cls, max_pixels: int) -> DecodeBudget:
        return cls(FULL_SIZE_DECODES * max_pixels * DECODE_BYTES_PER_PIXEL)

    @contextmanager
    def reserve(self, nbytes: int, timeout: float = DECODE_WAIT_S) -> Iterator[None]:
        """Hold `nbytes` of the budget for the block (one request larger than the whole budget runs alone)."""
        with self._room:
            if not self._room.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit, timeout):
                raise ApiError("server_busy", "The server is decoding other uploads; try again in a moment.")
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._room:
                self.used -= nbytes
                self._room.notify_all()


def input_name(index: int) -> str:
    return f"input_{index}.png"


def is_empty(source: bytes | IO[bytes]) -> bool:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source) == 0
    position = source.tell()
    empty = source.read(1) == b""
    source.seek(position)
    return empty


def open_header(source: bytes | IO[bytes], label: str, max_pixels: int) -> Image.Image:
    """Identify the file among the accepted formats and check its size; no pixel is decoded yet."""
    if is_empty(source):
        raise ApiError("empty_file", f"{label} is empty (0 bytes).")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            image = Image.open(stream, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ApiError("image_too_large", f"{label}: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ApiError(
            "invalid_image", f"{label} is not a PNG, JPEG or WebP image (or it is damaged)."
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(
            "image_too_large",
            f"{label} has {width}x{height} pixels; the limit is {max_pixels:,} pixels. Please downscale it.",
        )
    return image


@contextmanager
def decoded(
    source: bytes | IO[bytes], label: str, max_pixels: int, budget: DecodeBudget | None = None
) -> Iterator[Image.Image]:
    """The upload as an RGB/RGBA image, inside the decode budget for as long as the block holds it;
    a 400/413 `ApiError` says what is wrong with the file."""
    header = open_header(source, label, max_pixels)
    width, height = header.size
    reservation = budget.reserve(width * height * DECODE_BYTES_PER_PIXEL) if budget else _nothing()
    normalize, error_type = normalizer()
    with reservation:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                header.load()
            image = normalize(header, label)
        except error_type as exc:
            raise ApiError("invalid_image", str(exc)) from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ApiError(
                "invalid_image", f"{label}: the image file is damaged or truncated ({exc})."
            ) from exc
        finally:
            header.close()
        yield image


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def decode_upload(data: bytes | IO[bytes], label: str, max_pixels: int) -> Image.Image:
    """Bytes (or a file) from the client → an RGB/RGBA image, or a 400/413 `ApiError`."""
    with decoded(data, label, max_pixels) as image:
        return image


def save_png(folders: JobFolders, job_id: str, name: str, image: Image.Image) -> None:
    needed = image.width * image.height * STORED_BYTES_PER_PIXEL
    with folders.atomic(job_id, name, needed, f"storing {name}") as tmp:
        image.save(tmp, format=STORED_FORMAT, compress_level=1)


def save_preview(folders: JobFolders, job_id: str, image: Image.Image) -> None:
    save_png(folders, job_id, PREVIEW_FILE, ImageOps.contain(image, (PREVIEW_SIZE, PREVIEW_SIZE)))


def store_inputs(folders: JobFolders, job_id: str, images: list[Image.Image]) -> list[str]:
    """Write decoded inputs as PNG plus a small preview; returns the stored names."""
    names = []
    for i, image in enumerate(images):
        names.append(input_name(i))
        save_png(folders, job_id, names[-1], image)
    save_preview(folders, job_id, images[0])
    return names + [PREVIEW_FILE]


def store_uploads(
    folders: JobFolders,
    job_id: str,
    sources: list[bytes | IO[bytes]],
    max_pixels: int,
    budget: DecodeBudget | None = None,
) -> list[str]:
    """Check every upload's header first, then decode and store them one at a time (only one decoded
    image of a request is in memory); a failure removes what was written. Returns the stored names."""
    labels = [f"Image {i + 1}" if len(sources) > 1 else "The image" for i in range(len(sources))]
    pixels = 0
    for source, label in zip(sources, labels, strict=True):
        width, height = open_header(source, label, max_pixels).size  # not closed: it would close the file
        pixels += width * height
        if not isinstance(source, (bytes, bytearray, memoryview)):
            source.seek(0)
    check_space(folders.root, pixels * STORED_BYTES_PER_PIXEL, "storing the uploaded image(s)")
    names = []
    try:
        for i, (source, label) in enumerate(zip(sources, labels, strict=True)):
            with decoded(source, label, max_pixels, budget) as image:
                names.append(input_name(i))
                save_png(folders, job_id, names[-1], image)
                if i == 0:
                    save_preview(folders, job_id, image)
    except BaseException:
        folders.remove(job_id)
        raise
    return names + [PREVIEW_FILE]


def load_job_images(folders: JobFolders, job: Job) -> list[Image.Image]:
    """The job's stored inputs (not the preview): PNGs this server wrote, opened only as PNG."""
    normalize, _ = normalizer()
    images = []
    for name in job.inputs:
        if name.startswith("input_"):
            with Image.open(folders.path(job.id, name), formats=[STORED_FORMAT]) as image:
                image.load()
                images.append(normalize(image, name))
    return images
