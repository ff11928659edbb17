"""Small PNGs for the page, as data URLs: the 28×28 input(s) the model saw and feature-map mosaics.

Usage: `png_data_url(digit)` for a (28, 28) array in [0, 1] or uint8; `mosaic(maps, cols)` for (C, H, W) maps.
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np


def png_data_url(array: np.ndarray) -> str:
    """(H, W) gray (float in [0, 1] or uint8) or (H, W, 3) uint8 → "data:image/png;base64,..."."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)  # tiny images: speed over the last bytes
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def strip(digits: np.ndarray, gap: int = 2) -> np.ndarray:
    """(N, 28, 28) digits side by side, `gap` dark pixels apart (the inputs of a number)."""
    n, h, w = digits.shape
    out = np.zeros((h, n * w + (n - 1) * gap), dtype=np.float32)
    for k in range(n):
        out[:, k * (w + gap) : k * (w + gap) + w] = digits[k]
    return out


@functools.cache
def _viridis() -> np.ndarray:
    """matplotlib's viridis as a (256, 3) RGB table, from OpenCV (within 1 of matplotlib's; importing
    matplotlib would add ~0.3 s to the first request)."""
    import cv2

    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0, ::-1].copy()


def mosaic(maps: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """(C, H, W) feature maps → one RGB grid, each map on its own scale (viridis), as the show-features PNG."""
    c, h, w = maps.shape
    rows = -(-c // cols)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    scaled = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0)
    rgb = _viridis()[(scaled * 255).astype(np.uint8)]  # (C, H, W, 3)
    cells = np.full((rows * cols, h + gap, w + gap, 3), 255, dtype=np.uint8)
    cells[:c, :h, :w] = rgb
    grid = cells.reshape(rows, cols, h + gap, w + gap, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * (h + gap), cols * (w + gap), 3)[
        : rows * (h + gap) - gap, : cols * (w + gap) - gap
    ]


def features(f1: np.ndarray, f2: np.ndarray) -> dict:
    """conv1's (32, 14, 14) and conv2's (64, 6, 6) maps as two mosaics with their layout."""
    out = {}
    for name, maps, cols in (("conv1", f1, 8), ("conv2", f2, 8)):
        out[name] = {
            "png": png_data_url(mosaic(maps, cols)),
            "maps": len(maps),
            "cols": cols,
            "size": list(maps.shape[1:]),
        }
    return out
