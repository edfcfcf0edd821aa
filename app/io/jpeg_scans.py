"""Find a JPEG's scans by walking its markers at C speed, over one buffer or chunk by chunk over a stream.

libjpeg keeps every coefficient of a progressive JPEG and walks every block of a component once per scan, even
when the scan holds only a few bytes of end-of-band runs: a 72 KB file of 1000 scans of a 6000x6000 grey image
costs 22 s. What a progressive JPEG costs to decode is its pixels times its scans, not its size in bytes.

The walk follows libjpeg's reading: in entropy-coded data a 0xFF byte is followed by a stuffed 0x00 or a restart
marker (0xD0-0xD7), so any other 0xFF pair is a marker (fill bytes 0xFF may precede it); a marker segment is
skipped whole by its length, so bytes inside a table, a comment or an EXIF thumbnail never count; the walk ends
at the first end-of-image marker, after which nothing is decoded (the other pictures of a phone's file).
"""

from __future__ import annotations

import re

__all__ = ["JpegScans", "scan_offsets"]

SOS = 0xDA
EOI = 0xD9
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_WITH_LENGTH = frozenset({*range(0xC0, 0xC8), *range(0xC9, 0xD0), *range(0xDA, 0xF0), 0xFE})


class JpegScans:
    """The offsets of the start-of-scan markers of a JPEG fed to :meth:`feed` in order, in one piece or in chunks.

    Args:
        max_markers: Markers walked before :attr:`overflow` is set and the walk stops (restart markers inside
            entropy-coded data are not counted).
        skip: Bytes at the stream's start not to look at (the header already walked, ending where a marker begins).

    Attributes:
        offsets: The stream offset of each start-of-scan marker's 0xFF byte.
        markers: Markers walked.
        done: The end-of-image marker was reached (later bytes are ignored).
        overflow: More than ``max_markers`` markers (later bytes are ignored).
    """

    def __init__(self, max_markers: int, skip: int = 0) -> None:
        self.max_markers = max_markers
        self.offsets: list[int] = []
        self.markers = 0
        self.done = False
        self.overflow = False
        self._tail = b""
        self._base = 0
        self._skip = skip

    def feed(self, chunk: bytes) -> None:
        """Walk the next bytes of the stream."""
        if self.done or self.overflow:
            return
        buf = self._tail + chunk if self._tail else chunk
        base, self._tail = self._base, b""
        self._base = base + len(buf)
        pos = min(self._skip, len(buf))
        self._skip -= pos
        while not self._skip:
            found = _MARKER.search(buf, pos)
            if found is None:
                self._keep(buf, len(buf) - 1 if buf.endswith(b"\xff") else len(buf))
                return
            start, marker = found.start(), buf[found.start() + 1]
            if marker not in _WITH_LENGTH:
                pos = found.end()
                self.done = marker == EOI
            elif start + 4 > len(buf):
                self._keep(buf, start)
                return
            else:
                pos = start + 2 + int.from_bytes(buf[start + 2 : start + 4], "big")
                if marker == SOS:
                    self.offsets.append(base + start)
            self.markers += 1
            self.overflow = self.markers > self.max_markers
            if self.done or self.overflow:
                return
            if pos > len(buf):
                self._skip = pos - len(buf)
                return

    def _keep(self, buf: bytes, start: int) -> None:
        """Carry ``buf[start:]`` (a few bytes: a marker cut by the chunk's end) over to the next chunk."""
        self._tail = buf[start:]
        self._base -= len(self._tail)


def scan_offsets(data: bytes, start: int = 0, max_markers: int = 1 << 20) -> JpegScans:
    """Walk a whole JPEG (from ``start``, where a marker begins) and return the walk."""
    walk = JpegScans(max_markers, skip=start)
    walk.feed(data)
    return walk
