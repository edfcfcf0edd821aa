"""Decode uploads to 8-bit RGB.

Decoding applies the EXIF orientation and turns every PIL mode into 8-bit RGB:
grayscale and palette are expanded; 16-bit samples are scaled by 255/65535;
CMYK and other colour spaces are converted; anything with alpha (RGBA, LA,
palette, grayscale or RGB transparency) is composited on **white**. Animated files give their
first frame.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.defaults import MAX_PIXELS

__all__ = ["ImageDecodeError", "decode_image"]


class ImageDecodeError(ValueError):
    """An upload that cannot become an RGB image.

    Attributes:
        code: ``"unsupported_media_type"``, ``"corrupt_image"`` or ``"too_many_pixels"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        scale = 1.0 if peak <= 255 else 255.0 / 65535.0
        if mode == "F" and peak <= 1.0:
            scale = 255.0
        gray = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to ``(H, W, 3)`` uint8 RGB.

    Args:
        data: The encoded file.
        max_pixels: Largest ``width * height`` accepted; checked before decoding pixels.

    Raises:
        ImageDecodeError: not an image, corrupt or truncated, or too many pixels.
    """
    if not data:
        raise ImageDecodeError("unsupported_media_type", "the file is empty")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("unsupported_media_type", "the file is not an image format this server can read (PNG, JPEG, TIFF, BMP, GIF, WebP)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError("corrupt_image", f"the image header could not be read: {exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError("too_many_pixels", f"image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise ImageDecodeError("corrupt_image", f"image has no pixels ({width}x{height})")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError("corrupt_image", f"the image data is corrupt or truncated: {exc}") from exc
