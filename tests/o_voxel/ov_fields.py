"""Analytic PBR attribute fields (smooth functions of the Z-up position) and texture lookups for tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

LAYOUT = {"base_color": slice(0, 3), "metallic": slice(3, 4), "roughness": slice(4, 5), "alpha": slice(5, 6)}


def pbr_field(p: np.ndarray) -> np.ndarray:
    """(N, 3) Z-up positions -> (N, 6) attributes in [0, 1]: base colour RGB, metallic, roughness, alpha."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    return np.stack(
        [
            0.5 + 0.3 * np.sin(2.0 * x + 0.5),
            0.5 + 0.3 * np.cos(1.7 * y - 0.3),
            0.45 + 0.25 * np.sin(1.5 * z + 1.0) + 0.1 * x,
            0.5 + 0.35 * np.sin(2.5 * (x + y)),  # metallic pattern
            0.5 + 0.35 * np.cos(2.2 * z - 1.3 * x),  # roughness pattern
            0.8 + 0.15 * np.sin(3.0 * y),
        ],
        axis=1,
    )


def bilinear(image: Image.Image, uv_gltf: np.ndarray) -> np.ndarray:
    """Sample an image at glTF UVs (v = 0 is the top row), bilinear with texel centres at +0.5, clamp."""
    data = np.asarray(image).astype(np.float64)
    if data.ndim == 2:
        data = data[..., None]
    h, w = data.shape[:2]
    x = np.clip(uv_gltf[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip(uv_gltf[:, 1] * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = data[y0, x0] * (1 - fx) + data[y0, x1] * fx
    bottom = data[y1, x0] * (1 - fx) + data[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
