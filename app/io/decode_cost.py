"""What decoding an upload will cost, estimated from its header (:class:`~app.io.decoding.ImageHeader`) before any pixel is decoded.

The estimate follows the decode path of :mod:`app.io.decoding` stage by stage, with rates measured on two shared CPU
cores and rounded up (``python tests/hostile_corpus.py`` prints each hostile case's measured time and peak memory
beside the estimate; the memory estimate is at or above the measured peak for every case):

- **time**: per decoded pixel for each PIL decoder; a JPEG also per stored pixel and scan (libjpeg walks every block
  of a component once per scan, whatever the scan's size) and per compressed byte; a raw TIFF per strip; BMP's
  run-length decoder, written in Python, per pixel and per byte; then the conversion to RGB and, at working
  resolution, the resize, per pixel;
- **memory**: PIL's image (1, 2 or 4 bytes per pixel by mode), what the decoder holds beside it (a progressive JPEG's
  coefficients, 2 bytes per stored pixel and component even when decoded reduced; libwebp's canvases and copy, 12
  bytes per pixel), a transposed copy when the EXIF orientation asks (or may ask) for one, the RGB result (3 bytes per
  pixel), or at working resolution the full-size RGB image that is resized (4 bytes per pixel, unless the image is RGB
  already) and the resize's intermediate, plus the conversion's bands. The stages' sum bounds the peak.

A JPEG at working resolution is decoded reduced (``draft``, :func:`~app.io.decoding.decode_resized`): its pixels
are counted at the reduced size, except for the scans and the coefficients. :data:`DECODER_BYTES_PER_PIXEL` covers the
decoders' working buffers (libjpeg's rows, zlib's window, libtiff's strips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.io.decoding import ImageHeader
from app.io.resize import REDUCING_GAP
from app.io.to_rgb import BAND_PIXELS

__all__ = ["DecodeCost", "decode_cost", "draft_scale", "pil_bytes_per_pixel"]

# ns per decoded pixel: (base, per byte PIL keeps per pixel) of each PIL decoder ("" is libwebp).
DECODE_NS = {"jpeg": (6.0, 1.5), "zip": (8.0, 6.0), "gif": (20.0, 0.0), "raw": (6.0, 1.5), "libtiff": (4.0, 8.0), "bmp_rle": (300.0, 0.0), "": (10.0, 5.0)}
OTHER_DECODER_NS = (30.0, 10.0)
JPEG_NS_PER_SCAN_PIXEL = 1.0
JPEG_NS_PER_BYTE = 40.0
BMP_RLE_NS_PER_BYTE = 500.0
TILE_NS = 15_000.0
CONVERT_NS_PER_PIXEL = 10.0
RESIZE_NS_PER_PIXEL = 6.0
TRANSPOSE_NS_PER_PIXEL = 4.0
WEBP_EXTRA_BYTES_PER_PIXEL = 12
BMP_RLE_EXTRA_BYTES_PER_PIXEL = 2
JPEG_COEFFICIENT_BYTES = 2
BAND_BYTES_PER_PIXEL = 32
JPEG_COMPONENTS = {"L": 1, "RGB": 3, "CMYK": 4}
TRANSPOSING = frozenset({2, 3, 4, 5, 6, 7, 8})
DECODER_BYTES_PER_PIXEL = 1


@dataclass(frozen=True)
class DecodeCost:
    """The estimated cost of decoding one upload.

    Attributes:
        seconds: CPU time.
        peak_bytes: Memory held at once, at most.
        pixels: Pixels decoded (fewer than stored for a JPEG decoded reduced).
        scale: A JPEG's DCT scaling (1, 2, 4 or 8).
    """

    seconds: float
    peak_bytes: int
    pixels: int
    scale: int = 1


def pil_bytes_per_pixel(mode: str) -> int:
    """Bytes PIL keeps per pixel of an image of ``mode``."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def draft_scale(width: int, height: int, shape: tuple[int, int]) -> int:
    """The DCT scaling PIL's ``draft`` picks for a stored ``width × height`` JPEG wanted at ``shape`` (stored orientation):
    the largest of 8, 4, 2 and 1 that keeps it at least ``REDUCING_GAP`` times ``shape``."""
    rows, cols = shape
    scale = min(width // max(1, int(REDUCING_GAP * cols)), height // max(1, int(REDUCING_GAP * rows)))
    return next((s for s in (8, 4, 2, 1) if scale >= s), 1)


def decode_cost(header: ImageHeader, shape: tuple[int, int] | None = None) -> DecodeCost:
    """The cost of decoding the upload ``header`` describes, to full size (``shape`` ``None``) or resized to ``shape``.

    Args:
        header: What :func:`~app.io.decoding.probe_image` read.
        shape: The ``(H, W)`` the image is wanted at (its analysed size at working resolution), in its stored
            orientation (before EXIF orientation, as ``header``'s size), or ``None``.
    """
    stored = header.width * header.height
    scale = draft_scale(header.width, header.height, shape) if header.format == "JPEG" and shape is not None else 1
    pixels = math.ceil(header.width / scale) * math.ceil(header.height / scale)
    source = pixels * pil_bytes_per_pixel(header.mode)
    base, per_byte = DECODE_NS.get(header.decoder, OTHER_DECODER_NS)
    ns = pixels * (base + per_byte * pil_bytes_per_pixel(header.mode))
    extra = 0
    if header.format == "JPEG":
        ns += stored * JPEG_NS_PER_SCAN_PIXEL * header.scans + header.file_bytes * JPEG_NS_PER_BYTE
        extra = stored * JPEG_COMPONENTS.get(header.mode, 4) * JPEG_COEFFICIENT_BYTES if header.scans > 1 else 0
    elif header.format == "WEBP":
        extra = pixels * WEBP_EXTRA_BYTES_PER_PIXEL
    elif header.decoder == "bmp_rle":
        ns += header.file_bytes * BMP_RLE_NS_PER_BYTE
        extra = pixels * BMP_RLE_EXTRA_BYTES_PER_PIXEL
    elif header.decoder == "libtiff":
        extra = header.file_bytes
    ns += header.tiles * TILE_NS if header.tiles > 1 else 0
    transposed = source if header.orientation is None or header.orientation in TRANSPOSING else 0
    ns += pixels * (TRANSPOSE_NS_PER_PIXEL if transposed else 0.0) + pixels * CONVERT_NS_PER_PIXEL
    if shape is None or shape[0] * shape[1] >= pixels:
        converted = 3 * pixels
    else:
        ratio = max(1, min(header.width, header.height) // scale // max(1, min(shape)))
        copy = 0 if header.mode == "RGB" and header.format != "PNG" else 4 * pixels
        converted = copy + 4 * pixels // ratio + 3 * shape[0] * shape[1]
        ns += pixels * RESIZE_NS_PER_PIXEL
    bands = BAND_BYTES_PER_PIXEL * min(pixels, BAND_PIXELS + header.width)
    return DecodeCost(ns / 1e9, source + extra + transposed + converted + bands + DECODER_BYTES_PER_PIXEL * pixels, pixels, scale)
