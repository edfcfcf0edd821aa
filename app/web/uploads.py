"""Uploaded files as Starlette keeps them (spooled to a temporary file past 1 MiB): the header's size, and the bytes.

Both run in worker threads: the header is read before admission (it weighs the request's work), the bytes only
inside the analysis slot, so a request waiting in the queue holds its upload on disk, not in memory.
"""

from __future__ import annotations

from typing import BinaryIO

from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError, ImageHeader, probe_image

__all__ = ["PROBE_BYTES", "probe_upload", "read_upload"]

PROBE_BYTES = 2**20


def probe_upload(file: BinaryIO, max_pixels: int) -> ImageHeader:
    """Format and size from an upload's header (:func:`~app.io.decoding.probe_image`), decoding no pixel.

    The first :data:`PROBE_BYTES` are probed; only when they do not hold a readable header (a JPEG with large
    metadata, a TIFF whose directory is at its end) is the whole file read for the probe, and let go before the
    request waits.

    Raises:
        app.io.decoding.ImageDecodeError: what :func:`~app.io.decoding.decode_image` would refuse from the header.
    """
    file.seek(0)
    head = file.read(PROBE_BYTES)
    try:
        return probe_image(head, max_pixels)
    except ImageDecodeError as exc:
        if exc.code is ErrorCode.TOO_MANY_PIXELS or len(head) < PROBE_BYTES:
            raise
    return probe_image(read_upload(file), max_pixels)


def read_upload(file: BinaryIO) -> bytes:
    """The whole upload, from its start."""
    file.seek(0)
    return file.read()
