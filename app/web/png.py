"""A fast 8-bit greyscale PNG encoder for quantised maps, labels and codes.

Every row uses the Paeth filter and the stream is deflated at level 1 with the run-length strategy: on the
analysis maps this is as small as Pillow's adaptive filtering at level 6 (within 1 %) and about ten times faster,
which matters because four of them go into every answer.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["grey_png", "paeth_filter"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PAETH = 4


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def paeth_filter(image: np.ndarray) -> np.ndarray:
    """PNG's Paeth filter of every row: ``(H, W)`` uint8 → ``(H, W)`` uint8 residuals.

    Each byte becomes ``x - predictor mod 256``, the predictor being whichever of left ``a``, up ``b`` and
    upper-left ``c`` is nearest to ``a + b - c`` (ties: ``a``, then ``b``); outside the image they are 0.
    """
    height, width = image.shape
    padded = np.zeros((height + 1, width + 1), dtype=np.int16)
    padded[1:, 1:] = image
    a, b, c = padded[1:, :-1], padded[:-1, 1:], padded[:-1, :-1]
    pa = np.abs(b - c)  # |p - a| with p = a + b - c
    pb = np.abs(a - c)
    pc = np.abs(a + b - 2 * c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return (image - predictor.astype(np.uint8)).astype(np.uint8)


def grey_png(image: np.ndarray) -> bytes:
    """Encode ``(H, W)`` uint8 as an 8-bit greyscale PNG (no colour-space chunks: values are read back as stored).

    Raises:
        ValueError: not a non-empty 2-D uint8 array.
    """
    if image.ndim != 2 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"a greyscale PNG needs a non-empty (H, W) uint8 array, got {image.dtype} {image.shape}")
    height, width = image.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = _PAETH
    rows[:, 1:] = paeth_filter(image)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(rows.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
