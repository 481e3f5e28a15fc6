"""Bad and unusual image files: each becomes a usable image or a clear `ImageInputError`."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from trellis2.pipelines import ImageInputError, open_image
from trellis2.pipelines.preprocess import preprocess_image


def _png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (any header, e.g. 16-bit or absurd sizes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _blob(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2


def fake_background_removal(rgb: Image.Image) -> Image.Image:
    out = rgb.copy()
    out.putalpha(Image.fromarray((_blob(rgb.size[0])[: rgb.size[1]] * 255).astype(np.uint8)))
    return out


def _usable(image: Image.Image) -> Image.Image:
    assert image.mode in ("RGB", "RGBA")
    square = preprocess_image(image, remove_background=fake_background_removal)
    assert square.mode == "RGB" and square.size[0] == square.size[1] > 0
    return image


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (_save(Image.new("RGB", (1, 1)), "PNG"), "too small"),
        (_png_bytes(30000, 30000, 8, 6, b"\x00" * 16), "too large"),
        (_save(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:60], "damaged or truncated"),
    ],
)
def test_unusable_files_give_clear_errors(data, match):
    with pytest.raises(ImageInputError, match=match):
        open_image(data, name="upload.png")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        open_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty.png: the file is empty"):
        open_image(tmp_path / "empty.png")


def test_fully_transparent_image_is_a_clear_error():
    image = open_image(_save(Image.new("RGBA", (64, 64), (10, 20, 30, 0)), "PNG"))
    assert image.mode == "RGBA"
    with pytest.raises(ImageInputError, match="fully transparent"):
        preprocess_image(image, remove_background=fake_background_removal)


def test_sixteen_bit_rgba_png_keeps_its_alpha():
    size = 64
    rgba = np.zeros((size, size, 4), np.uint16)
    rgba[..., 0] = 50000
    rgba[..., 3] = np.where(_blob(size), 65535, 0)
    rows = b"".join(b"\x00" + rgba[y].astype(">u2").tobytes() for y in range(size))
    image = _usable(open_image(_png_bytes(size, size, 16, 6, rows)))
    assert image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert alpha.max() == 255 and alpha.min() == 0


def test_sixteen_bit_grayscale_png_is_rescaled():
    values = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    image = _usable(open_image(_save(Image.fromarray(values), "PNG")))
    assert image.mode == "RGB"
    pixels = np.asarray(image)[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255


def test_palette_png_with_transparency_becomes_rgba():
    palette = Image.fromarray(_blob().astype(np.uint8), "L").convert("P")
    image = _usable(open_image(_save(palette, "PNG", transparency=0)))
    assert image.mode == "RGBA"
    assert np.asarray(image.getchannel("A")).min() == 0


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_cmyk_and_grayscale_jpegs_become_rgb(mode):
    image = _usable(
        open_image(_save(Image.new(mode, (64, 48), 128 if mode == "L" else (10, 200, 30, 0)), "JPEG"))
    )
    assert image.mode == "RGB" and image.size == (64, 48)


def test_grayscale_with_alpha_becomes_rgba():
    la = Image.merge("LA", [Image.new("L", (64, 64), 90), Image.fromarray((_blob() * 255).astype(np.uint8))])
    image = _usable(open_image(_save(la, "PNG")))
    assert image.mode == "RGBA"
