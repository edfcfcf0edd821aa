"""An in-memory file that Pillow decodes from, which checks a cancel token at every read and hands out a JPEG a scan at a time.

Pillow's decoders run in C, which neither a deadline nor a signal handler can interrupt: Python code, the token's
check and a signal handler alike, only runs between two calls of the decoder. Pillow feeds a decoder block by
block, reading each block from its file (``ImageFile.load``: ``fp.read(decodermaxblock)``, 64 KiB), so the file's
``read`` is where a decode can be stopped, and a block's size bounds the work of one call:

- a JPEG's block never reaches past the start of the next scan (:attr:`CancellableReader.cuts`), so libjpeg
  decodes at most about one scan per call, however few bytes a scan takes (a progressive scan of end-of-band runs
  is a few bytes, and costs a pass over every block of a component);
- a PNG's 64 KiB of deflate data inflate to at most ~66 MB (deflate expands at most ~1032:1).

Cuts apply only while :meth:`CancellableReader.loading` (a header parser reads exact lengths). The token is checked
at every read of a block and at every :data:`SMALL_READS_PER_CHECK`-th small read (BMP's run-length decoder, written
in Python, reads its file one or two bytes at a time).
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from app.engine.cancel import CancelToken

__all__ = ["SMALL_READ", "SMALL_READS_PER_CHECK", "CancellableReader"]

SMALL_READ = 1024
SMALL_READS_PER_CHECK = 1024


class CancellableReader(io.BytesIO):
    """``data`` as a file whose reads first check ``cancel``.

    Args:
        data: The encoded file.
        cancel: Checked before every read of :data:`SMALL_READ` bytes or more and every :data:`SMALL_READS_PER_CHECK`-th
            smaller one (``None``: never).
        cuts: Offsets no read crosses while :meth:`loading` (a JPEG's start-of-scan markers).

    Raises:
        app.engine.cancel.AnalysisCancelled: from :meth:`read`, once ``cancel`` is cancelled.
    """

    def __init__(self, data: bytes, cancel: CancelToken | None = None, cuts: Sequence[int] = ()) -> None:
        super().__init__(data)
        self.cancel = cancel
        self.cuts = sorted(cuts)
        self.reads = 0
        self._loading = False

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when negative), never past the next cut while loading."""
        self.reads += 1
        if self.cancel is not None and (size is None or not 0 <= size < SMALL_READ or self.reads % SMALL_READS_PER_CHECK == 0):
            self.cancel.check()
        if self._loading and self.cuts and size is not None and size > 0:
            pos = self.tell()
            index = bisect.bisect_right(self.cuts, pos)
            if index < len(self.cuts):
                size = min(size, self.cuts[index] - pos)
        return io.BytesIO.read(self, size)

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Within this block reads stop at the cuts (pixel data is being decoded)."""
        self._loading = True
        try:
            yield
        finally:
            self._loading = False
