"""Uploaded files as Starlette keeps them (spooled to a temporary file past 1 MiB): the header, and the bytes.

Both run in worker threads: the header is read before admission (it weighs the request's work, the decode's
included), the bytes only inside the analysis slot, so a request waiting in the queue holds its upload on disk, not
in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from app.error_codes import ErrorCode
from app.io.containers import ContainerError, count_jpeg_scans
from app.io.decoding import ImageDecodeError, ImageHeader, container_error, probe_image
from app.web.tiled_uploads import probe_tiled

__all__ = ["PROBE_BYTES", "probe_upload", "read_upload"]

PROBE_BYTES = 2**20


def probe_upload(file: BinaryIO, max_pixels: int, max_tiled_pixels: int = 0) -> ImageHeader:
    """What an upload's header says (:func:`~app.io.decoding.probe_image`), decoding no pixel.

    With ``max_tiled_pixels``, a tiled TIFF that Pillow's probe refuses (over ``max_pixels``, or a BigTIFF) is probed
    as one read in windows instead (:func:`~app.web.tiled_uploads.probe_tiled`, ``tiled=True``).

    The first :data:`PROBE_BYTES` are probed; only when they do not hold a readable header (a JPEG with large
    metadata, a TIFF whose directory is at its end) is the whole file read for the probe, and let go before the
    request waits. A longer JPEG's scans are then counted through the rest of the file, a chunk at a time.

    Raises:
        app.io.decoding.ImageDecodeError: what :func:`~app.io.decoding.decode_image` would refuse from the header
            (a JPEG of too many scans included).
    """
    file.seek(0)
    head = file.read(PROBE_BYTES)
    try:
        header = probe_image(head, max_pixels)
    except ImageDecodeError as exc:
        tiled = probe_tiled(file, max_tiled_pixels)
        if tiled is not None:
            return tiled
        if exc.code is ErrorCode.TOO_MANY_PIXELS or len(head) < PROBE_BYTES:
            raise
        return probe_image(read_upload(file), max_pixels)
    if len(head) < PROBE_BYTES:
        return header
    size = file.seek(0, os.SEEK_END)
    if header.format != "JPEG":
        return header._replace(file_bytes=size)
    try:
        scans = count_jpeg_scans(_chunks(file))
    except ContainerError as exc:
        raise container_error(exc) from exc
    return header._replace(file_bytes=size, scans=scans)


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    """The file from its start, :data:`PROBE_BYTES` at a time."""
    file.seek(0)
    while chunk := file.read(PROBE_BYTES):
        yield chunk


def read_upload(file: BinaryIO) -> bytes:
    """The whole upload, from its start."""
    file.seek(0)
    return file.read()
