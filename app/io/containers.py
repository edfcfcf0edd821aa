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
- **TIFF**: at most :data:`MAX_TIFF_ENTRIES` entries in the first directory and :data:`MAX_TIFF_STRIPS` strips or
  tiles (:mod:`app.io.tiff_ifd`; Pillow decodes raw strips one by one in Python, ~10 µs each).

More than :data:`MAX_JPEG_SEGMENTS` JPEG header segments, or more than :data:`MAX_JPEG_HEADER_BYTES` of kept
tables, is refused too; so is a JPEG of more than :data:`MAX_JPEG_SCANS` scans (:mod:`app.io.jpeg_scans`), or of
more than :data:`MAX_JPEG_SEGMENTS` markers after its header. Encoders write few scans: libjpeg's progressive
script (cjpeg, Pillow, jpegtran) 6 for grey, 10 for colour, 18 for CMYK; Photoshop 3 to 5; mozjpeg chooses its
scans among 64 candidates. Each scan makes libjpeg walk all the blocks of a component again (0.66 ns per pixel per
scan measured), so 64 scans cost at most ~1.7 s at 40 MP, and 1000 cost 22 s at 36 MP.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import NamedTuple

from app.io.jpeg_scans import JpegScans
from app.io.tiff_ifd import tiff_layout

__all__ = [
    "MAX_GIF_BLOCKS",
    "MAX_JPEG_HEADER_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_JPEG_SEGMENTS",
    "MAX_PNG_CHUNKS",
    "MAX_TIFF_ENTRIES",
    "MAX_TIFF_STRIPS",
    "Container",
    "ContainerError",
    "bound_container",
    "count_jpeg_scans",
]

MAX_JPEG_SEGMENTS = 4096
MAX_JPEG_SCANS = 64
MAX_JPEG_HEADER_BYTES = 2**20
MAX_PNG_CHUNKS = 65_536
MAX_GIF_BLOCKS = 65_536
MAX_TIFF_ENTRIES = 4096
MAX_TIFF_STRIPS = 65_536

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILL = re.compile(rb"\xff+")
_STANDALONE = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
_WITH_LENGTH = frozenset({*range(0xC0, 0xC8), *range(0xC9, 0xD0), *range(0xDB, 0xE0), *range(0xE0, 0xF0), 0xFE})
_KEPT_APP = {0xE0: (b"JFIF",), 0xE1: (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/\x00"), 0xEE: (b"Adobe",)}


class ContainerError(ValueError):
    """A file whose structure is beyond the bounds above."""


class Container(NamedTuple):
    """A file whose structure is within bounds.

    Attributes:
        data: The file, or a JPEG with the unneeded header segments dropped.
        scans: A JPEG's start-of-scan offsets in ``data`` (empty for other formats).
    """

    data: bytes
    scans: tuple[int, ...] = ()


def bound_container(data: bytes, formats: Collection[str]) -> Container:
    """``data`` with its container structure bounded, for the Pillow formats in ``formats``.

    Args:
        data: The encoded file.
        formats: Pillow format names that may be opened; only their containers are inspected.

    Raises:
        ContainerError: too many JPEG header segments, markers or scans, PNG chunks, GIF blocks, or TIFF entries or strips.
    """
    if data.startswith(b"\xff\xd8\xff") and "JPEG" in formats:
        bounded, start = _bound_jpeg(data)
        walk = JpegScans(MAX_JPEG_SEGMENTS, skip=start)
        walk.feed(bounded)
        return Container(bounded, tuple(_checked_scans(walk)))
    if data.startswith(_PNG_SIGNATURE) and "PNG" in formats:
        _check_png(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and "GIF" in formats:
        _check_gif(data)
    elif "TIFF" in formats:
        _check_tiff(data)
    return Container(data)


def count_jpeg_scans(chunks: Iterable[bytes]) -> int:
    """The scans of a JPEG read in chunks from its start, holding no more than a chunk (its header already bounded).

    Raises:
        ContainerError: more than :data:`MAX_JPEG_SCANS` scans, or too many markers.
    """
    walk = JpegScans(2 * MAX_JPEG_SEGMENTS)
    for chunk in chunks:
        walk.feed(chunk)
        if walk.done or walk.overflow or len(walk.offsets) > MAX_JPEG_SCANS:
            break
    return len(_checked_scans(walk))


def _checked_scans(walk: JpegScans) -> list[int]:
    if walk.overflow:
        raise ContainerError(f"the JPEG has more than {walk.max_markers} markers")
    if len(walk.offsets) > MAX_JPEG_SCANS:
        raise ContainerError(
            f"the JPEG has {len(walk.offsets)}{'' if walk.done else ' or more'} scans; at most {MAX_JPEG_SCANS} are accepted "
            "(encoders write 1 to about 20, and each scan costs a pass over the whole image)"
        )
    return walk.offsets


def _keep_app(marker: int, segment: bytes, kept: set[bytes]) -> bool:
    for prefix in _KEPT_APP.get(marker, ()):
        if segment.startswith(prefix, 4):
            if prefix in kept:
                return False
            kept.add(prefix)
            return True
    return False


def _bound_jpeg(data: bytes) -> tuple[bytes, int]:
    """The JPEG with its header bounded, and the offset in it where the header ends (its first scan, as a rule)."""
    parts = [data[:2]]
    kept: set[bytes] = set()
    tables = 0
    changed = False
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        start = data.find(b"\xff", pos)
        fill = _FILL.match(data, start) if start >= 0 else None
        if fill is None or fill.end() >= len(data):
            header = b"".join(parts)
            return header, len(header)
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
            first_scan = sum(map(len, parts))
            parts.append(data[pos:])
            break
    else:
        raise ContainerError(f"the JPEG has more than {MAX_JPEG_SEGMENTS} header segments")
    if tables > MAX_JPEG_HEADER_BYTES:
        raise ContainerError(f"the JPEG's tables take more than {MAX_JPEG_HEADER_BYTES} bytes")
    return (b"".join(parts) if changed else data), first_scan


def _check_png(data: bytes) -> None:
    pos = len(_PNG_SIGNATURE)
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data) or data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    if pos + 8 <= len(data):
        raise ContainerError(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")


def _check_tiff(data: bytes) -> None:
    layout = tiff_layout(data, MAX_TIFF_ENTRIES)
    if layout is not None and layout.entries > MAX_TIFF_ENTRIES:
        raise ContainerError(f"the TIFF's first directory has {layout.entries} entries, more than {MAX_TIFF_ENTRIES}")
    if layout is not None and layout.strips > MAX_TIFF_STRIPS:
        raise ContainerError(f"the TIFF has {layout.strips} strips or tiles, more than {MAX_TIFF_STRIPS}")


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
