"""Turn a decoded PIL image of any mode into 8-bit RGB, band by band, so the conversion holds no full-size temporary.

Grayscale and palette are expanded; 16-bit samples are scaled by 255/65535 (``round(x / 257)``, exactly); 32-bit
integer and float images by 1 when their peak is at most 255 (float: by 255 when at most 1.0), else by 255/65535;
CMYK and other colour spaces are converted by PIL; anything with alpha (RGBA, LA, palette, grayscale or RGB
transparency) is composited on **white**. A band of rows is converted at a time (about :data:`BAND_PIXELS`), so a
6300x6300 16-bit image needs its 79 MB of samples and its 119 MB of RGB, not the 0.9 GB of float64 copies of a
whole-image conversion; the cancel token is checked between bands.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from app.engine.cancel import CancelToken, checkpoint

__all__ = ["BAND_PIXELS", "rgb_array", "rgb_image"]

BAND_PIXELS = 1 << 20
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def rgb_array(img: Image.Image, cancel: CancelToken | None = None) -> np.ndarray:
    """``img`` as ``(H, W, 3)`` uint8 RGB (a copy), converted band by band (an RGB image's too: ``np.asarray`` of a whole
    image holds its bytes twice)."""
    out = np.empty((img.height, img.width, 3), np.uint8)
    for top, band in _bands(img, cancel):
        out[top : top + band.shape[0]] = band
    return out


def rgb_image(img: Image.Image, cancel: CancelToken | None = None) -> Image.Image:
    """``img`` as a PIL ``"RGB"`` image (``img`` itself when it is one), converted band by band."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    out = Image.new("RGB", img.size)
    for top, band in _bands(img, cancel):
        out.paste(Image.fromarray(band), (0, top))
    return out


def _bands(img: Image.Image, cancel: CancelToken | None) -> Iterator[tuple[int, np.ndarray]]:
    """``(top row, (rows, W, 3) uint8)`` for each band of ``img``, top to bottom."""
    rows = max(1, BAND_PIXELS // max(1, img.width))
    scale = _scale(img)
    for top in range(0, img.height, rows):
        checkpoint(cancel)
        band = img.crop((0, top, img.width, min(img.height, top + rows)))
        yield top, _band_rgb(band, scale)


def _scale(img: Image.Image) -> float:
    """The factor of a 32-bit integer or float image (from its peak over the whole image); 1 for every other mode."""
    if img.mode not in ("I", "F"):
        return 1.0
    extrema = img.getextrema()
    peak = float(extrema[1]) if isinstance(extrema[1], (int, float)) else 0.0
    if img.mode == "F" and peak <= 1.0:
        return 255.0
    return 1.0 if peak <= 255 else 255.0 / 65535.0


def _band_rgb(band: Image.Image, scale: float) -> np.ndarray:
    mode = band.mode
    if mode in SIXTEEN_BIT:
        gray = ((np.asarray(band).astype(np.uint32) + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("I", "F"):
        arr = np.array(band, dtype=np.float64)
        arr *= scale
        gray = np.clip(np.rint(arr, out=arr), 0, 255, out=arr).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("P", "L", "RGB") and "transparency" in band.info:
        band = band.convert("RGBA")
    if band.mode in ALPHA:
        rgba = band.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(band.convert("RGB"))
