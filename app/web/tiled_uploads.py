"""Tiled TIFF uploads beyond the decoded images' pixel limit: read tile by tile into a streamed full-resolution analysis.

A TIFF or BigTIFF whose first image is tiled and whose pixels are more than ``SEGU_MAX_PIXELS`` (or that Pillow cannot
read, as a BigTIFF) is never decoded whole: its header is probed with tifffile from the uploaded file (spooled to disk
by Starlette, or by :func:`spooled_copy` for a job). ``resolution=full`` analyses it in sliding windows, reading
only the tiles each window touches (:class:`~app.io.pixel_source.TiledTiffSource`), into a ``maps.zarr`` in the cache's
folder (:func:`~app.workflows.stream_analysis.analyze_to_store`): previews in the answer, exact pixels by id; the
working resolution reduces it band by band to the working size first. Its size is bounded by ``SEGU_MAX_TILED_PIXELS``;
its memory by one band of windows (or of rows), whatever its size.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from app.defaults import DECODE_NS_PER_WORK_UNIT
from app.engine.analysis import Analysis
from app.engine.cancel import CancelToken
from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError, ImageHeader
from app.io.pixel_source import TiledImageError, is_tiled_tiff, open_tiled_tiff
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.stream_analysis import analyze_to_store
from app.workflows.stream_folder import reduced_rgb

__all__ = ["READ_NS_PER_PIXEL", "SPOOL_BYTES", "analyse_tiled", "is_tiff", "probe_tiled", "reading_units", "spooled_copy"]

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SPOOL_BYTES = 16 * 2**20
READ_NS_PER_PIXEL = 50.0  # reading and reducing a zlib-tiled RGB slide to the working size: 41 ns measured (13.5 MP), rounded up
UPLOAD_NAME = "the uploaded TIFF"


def is_tiff(file: BinaryIO) -> bool:
    """Whether the file starts as a TIFF or BigTIFF does."""
    file.seek(0)
    return file.read(4) in TIFF_MAGICS


def probe_tiled(file: BinaryIO, max_tiled_pixels: int) -> ImageHeader | None:
    """The header of a tiled TIFF upload (``tiled=True``), or ``None`` when the file is not a tiled TIFF.

    The whole file's structure is checked (every tile present and inside the file), no tile decoded.

    Raises:
        ImageDecodeError: ``too_many_pixels`` beyond ``max_tiled_pixels``; ``corrupt_image`` for a tiled TIFF that
            cannot be read in windows (missing or truncated tiles, unsupported samples), naming the problem.
    """
    if max_tiled_pixels < 1 or not is_tiff(file) or not is_tiled_tiff(file):
        return None
    try:
        with open_tiled_tiff(file, max_tiled_pixels, name=UPLOAD_NAME) as source:
            height, width = source.height, source.width
    except TiledImageError as exc:
        code = ErrorCode.TOO_MANY_PIXELS if exc.too_large else ErrorCode.CORRUPT_IMAGE
        suffix = " (SEGU_MAX_TILED_PIXELS)" if code is ErrorCode.TOO_MANY_PIXELS else ""
        raise ImageDecodeError(code, exc.message + suffix) from exc
    except Exception as exc:  # a malformed directory tifffile trips over
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"{UPLOAD_NAME} is a damaged TIFF file ({type(exc).__name__}).") from exc
    size = file.seek(0, 2)
    return ImageHeader("TIFF", width, height, file_bytes=size, decoder="tiled", tiled=True)


def reading_units(header: ImageHeader, resolution: str) -> int:
    """Work units of reading a tiled upload whole to reduce it to the working size (0 at full resolution, where the
    windows read the tiles as part of the analysis), at :data:`READ_NS_PER_PIXEL`."""
    if not header.tiled or resolution == "full":
        return 0
    return math.ceil(header.width * header.height * READ_NS_PER_PIXEL / DECODE_NS_PER_WORK_UNIT)


def analyse_tiled(analyzer: Analyzer, file: BinaryIO, request: AnalysisRequest, store_path: Path, max_tiled_pixels: int, token: CancelToken) -> Analysis:
    """Analyse a tiled TIFF upload: at full resolution into a ``maps.zarr`` at ``store_path`` (removed on failure); at the
    working resolution reduced band by band to the working size (:func:`~app.workflows.stream_folder.reduced_rgb`, as
    ``analyze`` does) and analysed as any photo (``store_path`` unused).

    Raises:
        ImageDecodeError: ``corrupt_image`` when a tile cannot be decoded (the message names its rows and columns).
    """
    try:
        with open_tiled_tiff(file, max_tiled_pixels, name=UPLOAD_NAME) as source:
            if request.resolution != "full":
                size = (source.height, source.width)
                rgb = reduced_rgb(source, analyzer.analysed_shape(*size, "working"), token)
                return analyzer.analyze_image(rgb, request, cancel=token, input_size=size)
            return analyze_to_store(analyzer, source, request, store_path, ("mean_probs",), cancel=token)
    except TiledImageError as exc:
        shutil.rmtree(store_path, ignore_errors=True)
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, exc.message) from exc
    except BaseException:
        shutil.rmtree(store_path, ignore_errors=True)
        raise


def spooled_copy(upload: BinaryIO) -> BinaryIO:
    """A copy of the whole upload that outlives its request: in memory up to :data:`SPOOL_BYTES`, then on disk."""
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (closed by the job that owns it)
    upload.seek(0)
    shutil.copyfileobj(upload, copy, 2**20)
    copy.seek(0)
    return copy  # type: ignore[return-value]
