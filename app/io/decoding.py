"""Decode uploads to 8-bit RGB.

Only the documented formats are opened (:data:`~app.defaults.IMAGE_FORMATS`: PNG, JPEG, TIFF, BMP, GIF,
WebP); any other file, EPS/PS/PDF included, is refused before a decoder (or Ghostscript) sees it. The
container's structure is bounded first (:mod:`app.io.containers`), and the pixel limit is checked from the
header, before any pixel is decoded.

Decoding applies the EXIF orientation (reading that one tag only) and turns every PIL mode into 8-bit RGB:
grayscale and palette are expanded; 16-bit samples are scaled by 255/65535; CMYK and other colour spaces
are converted; anything with alpha (RGBA, LA, palette, grayscale or RGB transparency) is composited on
**white**. Animated files give their first frame. ICC profiles are not applied.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.defaults import IMAGE_FORMATS, MAX_PIXELS
from app.error_codes import ErrorCode
from app.io.containers import ContainerError, bound_container

__all__ = ["ImageDecodeError", "ImageHeader", "decode_image", "open_image", "probe_image"]

FORMAT_NAMES = {"WEBP": "WebP"}
ORIENTATION_TAG = 0x0112
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """An upload that cannot become an RGB image.

    Attributes:
        code: :attr:`~app.error_codes.ErrorCode.UNSUPPORTED_MEDIA_TYPE`, ``CORRUPT_IMAGE`` or ``TOO_MANY_PIXELS``.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
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


class ImageHeader(NamedTuple):
    """What an image's header says, before any pixel is decoded.

    Attributes:
        format: Pillow's format name, one of :data:`~app.defaults.IMAGE_FORMATS` (a multi-picture phone
            JPEG is a ``"JPEG"``: its picture index is dropped with the other metadata and its first picture decoded).
        width: Stored width in pixels (before EXIF orientation).
        height: Stored height in pixels (before EXIF orientation).
    """

    format: str
    width: int
    height: int


def _format_list(formats: Sequence[str]) -> str:
    return ", ".join(FORMAT_NAMES.get(f, f) for f in formats)


def open_image(data: bytes, formats: Sequence[str] = IMAGE_FORMATS, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Open ``data`` as one of ``formats`` and check its size, reading its header only.

    Args:
        data: The encoded file.
        formats: Pillow format names accepted; any other format is refused unread.
        max_pixels: Largest ``width * height`` accepted (``None``: only Pillow's decompression-bomb limit).

    Raises:
        ImageDecodeError: empty or another format (``unsupported_media_type``), an unreadable header or
            container (``corrupt_image``), or more than ``max_pixels`` pixels (``too_many_pixels``).
    """
    if not data:
        raise ImageDecodeError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "the file is empty")
    try:
        img: Image.Image = Image.open(io.BytesIO(bound_container(data, formats)), formats=list(formats))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"the file is not an image in an accepted format ({_format_list(formats)})") from exc
    except ContainerError as exc:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image file exceeds safe structural limits: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image header could not be read: {exc}") from exc
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, f"image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"image has no pixels ({width}x{height})")
    return img


def probe_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Format and stored size of ``data`` from its header, with the checks of :func:`decode_image`, decoding no pixel.

    Raises:
        ImageDecodeError: as :func:`decode_image` would for the header (format, structure, pixel limit).
    """
    with open_image(data, IMAGE_FORMATS, max_pixels) as img:
        return ImageHeader(str(img.format), img.size[0], img.size[1])


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable: metadata never makes an image fail)."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to ``(H, W, 3)`` uint8 RGB.

    Args:
        data: The encoded file.
        max_pixels: Largest ``width * height`` accepted; checked before decoding pixels.

    Raises:
        ImageDecodeError: not an image of an accepted format, corrupt or truncated, or too many pixels.
    """
    img = open_image(data, IMAGE_FORMATS, max_pixels)
    try:
        img.load()
        method = TRANSPOSE.get(_orientation(img))
        if method is not None:
            img = img.transpose(method)
        return _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image data is corrupt or truncated: {exc}") from exc
