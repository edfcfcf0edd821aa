"""The sizes Pillow would walk in Python in a TIFF's first directory, read before Pillow parses it.

Pillow reads every entry of a TIFF's first image file directory in a Python loop, unpacks the strip (or tile)
offsets into a tuple and builds one Python tile per strip, which it then decodes one by one: a 50 MB TIFF of 6
million one-row strips would cost ~20 s to open and ~2 GB. This reads the directory's entry count and the value
counts of the strip and tile tags, at C speed, for classic TIFF and BigTIFF.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["TiffLayout", "tiff_layout"]

STRIP_TAGS = frozenset({273, 279, 324, 325})  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts
_SIGNATURES = {b"II*\x00": ("<", False), b"MM\x00*": (">", False), b"II+\x00": ("<", True), b"MM\x00+": (">", True)}


class TiffLayout(NamedTuple):
    """What a TIFF's first directory holds.

    Attributes:
        entries: Its entries (tags).
        strips: The most values of a strip or tile tag (the image's strips or tiles).
    """

    entries: int
    strips: int


def tiff_layout(data: bytes, max_entries: int) -> TiffLayout | None:
    """The layout of a TIFF's first directory (its strips counted only when it has at most ``max_entries`` entries);
    ``None`` when ``data`` is not a TIFF or the directory is out of the file (Pillow then refuses it itself)."""
    kind = _SIGNATURES.get(data[:4])
    if kind is None:
        return None
    order, big = kind
    count_format, entry_format = (f"{order}Q", f"{order}HHQ") if big else (f"{order}H", f"{order}HHI")
    try:
        offset = struct.unpack_from(f"{order}Q" if big else f"{order}I", data, 8 if big else 4)[0]
        entries = struct.unpack_from(count_format, data, offset)[0]
        start = offset + struct.calcsize(count_format)
        size = 20 if big else 12
        strips = 0
        for index in range(min(entries, max_entries, (len(data) - start) // size)):
            tag, _type, count = struct.unpack_from(entry_format, data, start + index * size)
            if tag in STRIP_TAGS:
                strips = max(strips, count)
    except struct.error:
        return None
    return TiffLayout(entries, strips)
