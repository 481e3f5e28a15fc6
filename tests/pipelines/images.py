"""Synthetic test images."""

from __future__ import annotations

from PIL import Image, ImageDraw


def object_image(color=(200, 80, 40), opaque: bool = False, size: int = 128) -> Image.Image:
    """A disk with a bar: RGBA with a transparent background, or the same on white."""
    image = Image.new("RGBA", (size, size), (255, 255, 255, 255 if opaque else 0))
    draw = ImageDraw.Draw(image)
    s = size / 256
    draw.ellipse((48 * s, 40 * s, 208 * s, 200 * s), fill=(*color, 255))
    draw.rectangle((110 * s, 150 * s, 146 * s, 236 * s), fill=(60, 90, 200, 255))
    return image
