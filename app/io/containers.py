"""Bound the container structure Pillow walks in Python before it decodes any pixel.

Pillow reads a JPEG's header segments, a PNG's chunks and a GIF's extension blocks one by one in Python, and
appends every EXIF segment of a JPEG to the previous ones (quadratic: a 45 MB JPEG of 722 EXIF segments took
9.6 s to open). These walks run here first, at C speed where they can and capped in count, so no upload costs
more than a few milliseconds before its pixels are decoded:

- **JPEG**: of the header segments before the first scan, only what decoding and orientation need is kept:
  the first JFIF (APP0), EXIF and XMP (APP1) and Adobe (APP14) segments and every non-application segment
  (tables, frame, restart interval). Further EXIF segments, ICC profiles, MPF indexes, Photoshop blocks,
  comments and fill or junk bytes are dropped; the entropy-coded data is passed on untouched.
- **PNG**: at most :data:`MAX_PNG_CHUNKS` chunks.
- **GIF**: at most :data:`MAX_GIF_BLOCKS` extension sub-blocks and stray bytes before the first image.

More than :data:`MAX_JPEG_SEGMENTS` JPEG header segments, or more than :data:`MAX_JPEG_HEADER_BYTES` of kept
tables, is refused too.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["MAX_GIF_BLOCKS", "MAX_JPEG_HEADER_BYTES", "MAX_JPEG_SEGMENTS", "MAX_PNG_CHUNKS", "ContainerError", "bound_container"]

MAX_JPEG_SEGMENTS = 4096
MAX_JPEG_HEADER_BYTES = 2**20
MAX_PNG_CHUNKS = 65_536
MAX_GIF_BLOCKS = 65_536

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILL = re.compile(rb"\xff+")
_STANDALONE = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
_WITH_LENGTH = frozenset({*range(0xC0, 0xC8), *range(0xC9, 0xD0), *range(0xDB, 0xE0), *range(0xE0, 0xF0), 0xFE})
_KEPT_APP = {0xE0: (b"JFIF",), 0xE1: (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/\x00"), 0xEE: (b"Adobe",)}


class ContainerError(ValueError):
    """A file whose structure is beyond the bounds above."""


def bound_container(data: bytes, formats: Collection[str]) -> bytes:
    """``data`` with its container structure bounded, for the Pillow formats in ``formats``.

    Args:
        data: The encoded file.
        formats: Pillow format names that may be opened; only their containers are inspected.

    Returns:
        ``data`` itself, or a JPEG with the unneeded header segments dropped.

    Raises:
        ContainerError: too many JPEG header segments or PNG chunks or GIF blocks.
    """
    if data.startswith(b"\xff\xd8\xff") and "JPEG" in formats:
        return _bound_jpeg(data)
    if data.startswith(_PNG_SIGNATURE) and "PNG" in formats:
        _check_png(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and "GIF" in formats:
        _check_gif(data)
    return data


def _keep_app(marker: int, segment: bytes, kept: set[bytes]) -> bool:
    for prefix in _KEPT_APP.get(marker, ()):
        if segment.startswith(prefix, 4):
            if prefix in kept:
                return False
            kept.add(prefix)
            return True
    return False


def _bound_jpeg(data: bytes) -> bytes:
    parts = [data[:2]]
    kept: set[bytes] = set()
    tables = 0
    changed = False
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        start = data.find(b"\xff", pos)
        fill = _FILL.match(data, start) if start >= 0 else None
        if fill is None or fill.end() >= len(data):
            return b"".join(parts)
        changed |= fill.end() - pos > 1
        marker, pos = data[fill.end()], fill.end() - 1
        if marker == 0x00:
            changed, pos = True, pos + 2
        elif marker in _STANDALONE:
            parts.append(data[pos : pos + 2])
            pos += 2
        elif marker in _WITH_LENGTH:
            end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            segment = data[pos:end]
            if marker < 0xE0:
                parts.append(segment)
                tables += len(segment)
            elif _keep_app(marker, segment, kept):
                parts.append(segment)
            else:
                changed = True
            pos = end
        else:
            parts.append(data[pos:])
            break
    else:
        raise ContainerError(f"the JPEG has more than {MAX_JPEG_SEGMENTS} header segments")
    if tables > MAX_JPEG_HEADER_BYTES:
        raise ContainerError(f"the JPEG's tables take more than {MAX_JPEG_HEADER_BYTES} bytes")
    return b"".join(parts) if changed else data


def _check_png(data: bytes) -> None:
    pos = len(_PNG_SIGNATURE)
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data) or data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    if pos + 8 <= len(data):
        raise ContainerError(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")


def _check_gif(data: bytes) -> None:
    flags = data[10] if len(data) > 10 else 0
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < len(data) and data[pos] not in (0x2C, 0x3B):
        if data[pos] == 0x21:
            pos += 2
            while pos < len(data) and data[pos]:
                pos += data[pos] + 1
                blocks += 1
                if blocks > MAX_GIF_BLOCKS:
                    break
        blocks += 1
        pos += 1
        if blocks > MAX_GIF_BLOCKS:
            raise ContainerError(f"the GIF has more than {MAX_GIF_BLOCKS} blocks before its first image")
