"""Where an image's pixels come from when it is analysed in windows, so an image larger than memory is never decoded whole.

A :class:`PixelSource` hands out ``(rows, cols, 3)`` uint8 RGB regions: :class:`ArraySource` from an array in memory,
:class:`TiledTiffSource` (:func:`open_tiled_tiff`) from a tiled TIFF or BigTIFF through tifffile's zarr store, decoding
only the tiles a read touches; :func:`is_tiled_tiff` tells cheaply whether a file is such a TIFF.

Conversions (``max`` = 255 or 65535) of 1 to 4 uint8/uint16 samples (gray, gray+alpha, RGB, RGBA; contiguous or separate
planes): gray (MinIsWhite inverted first) is repeated to RGB; uint16 without alpha becomes ``round(v / 257)`` (=
``round(v * 255 / 65535)``, exact integers); alpha is composited on white in float32, ``c = v * 255 / max``, ``a = alpha /
max``: ``rint(c * a + 255 * (1 - a))`` (premultiplied: ``rint(c + 255 * (1 - a))``), ``rint`` rounding half to even.

Errors are :class:`TiledImageError` (a ``ValueError``; ``.message`` for the user): not a readable TIFF, striped, several
images/planes in the first series, unsupported samples/photometric/compression, over the pixel limit, missing tiles or
tiles past the end of the file (on open), tiles that cannot be decoded (from ``read``, naming the region: corrupt zlib
raises ``zlib.error``, short tile data tifffile's ``TiffFileError``, imagecodecs ``RuntimeError``).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

import numpy as np
import tifffile
import zarr
from tifffile import COMPRESSION, EXTRASAMPLE, PHOTOMETRIC, TIFF

from app.engine.sliding_window import RegionReader
from app.plural import plural, word_for

__all__ = ["ArraySource", "PixelSource", "TiledImageError", "TiledTiffSource", "is_tiled_tiff", "open_tiled_tiff"]


class TiledImageError(ValueError):
    """A tiled TIFF that cannot be read in windows; ``.message`` is a sentence for the user naming the problem, ``.too_large``
    tells that the image is only over the pixel limit."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


class PixelSource(RegionReader, Protocol):
    """A :class:`~app.engine.sliding_window.RegionReader` (regions as ``(rows, cols, 3)`` uint8 RGB; ValueError unless
    inside the image) that holds something open until closed."""

    def close(self) -> None:
        """Release what the source holds open."""


def _check_region(height: int, width: int, top: int, left: int, rows: int, cols: int) -> None:
    if min(top, left) < 0 or min(rows, cols) < 1 or top + rows > height or left + cols > width:
        raise ValueError(f"the region of {rows}x{cols} pixels at row {top}, column {left} is not inside the {height}x{width} image")


class _Base:
    """What both sources share: their size, and ``with source:`` closing it on exit."""

    _height: int
    _width: int

    @property
    def height(self) -> int:
        """The image's rows."""
        return self._height

    @property
    def width(self) -> int:
        """The image's columns."""
        return self._width

    def close(self) -> None:
        """Release what the source holds open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


class ArraySource(_Base):
    """An ``(H, W, 3)`` uint8 RGB array in memory (``pixels``); :meth:`read` returns a view of it.

    Raises:
        ValueError: ``pixels`` is not ``(H, W, 3)`` uint8.
    """

    def __init__(self, pixels: np.ndarray) -> None:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"an ArraySource needs an (H, W, 3) uint8 array, not {pixels.shape} {pixels.dtype}")
        self._pixels = pixels
        self._height, self._width = int(pixels.shape[0]), int(pixels.shape[1])

    def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
        """A view of the region at ``(top, left)``; ValueError unless it lies inside the image."""
        _check_region(self.height, self.width, top, left, rows, cols)
        return self._pixels[top : top + rows, left : left + cols]


class TiledTiffSource(_Base):
    """Level 0 of a tiled TIFF's first series, read tile by tile (from :func:`open_tiled_tiff`; open until closed)."""

    def __init__(self, tiff: tifffile.TiffFile, name: str, axes: str, alpha: str | None, invert: bool) -> None:
        self._tiff, self._name, self._axes, self._alpha, self._invert = tiff, name, axes, alpha, invert
        self._pixels = zarr.open_array(tiff.aszarr(series=0, level=0), mode="r")
        self._height, self._width = int(tiff.series[0].keyframe.imagelength), int(tiff.series[0].keyframe.imagewidth)

    def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
        """The region at ``(top, left)`` as a new ``(rows, cols, 3)`` uint8 RGB array, decoding only its tiles.

        Raises:
            ValueError: The region is not inside the image, or the source is closed.
            TiledImageError: A tile of the region cannot be decoded.
        """
        if self._tiff.filehandle.closed:
            raise ValueError(f"{self._name} is closed")
        _check_region(self.height, self.width, top, left, rows, cols)
        region = (slice(top, top + rows), slice(left, left + cols))
        try:
            raw = np.asarray(self._pixels[(slice(None), *region) if self._axes == "SYX" else region])
        except (ValueError, RuntimeError, OSError, EOFError, zlib.error) as error:  # what corrupt tiles raise
            where = f"rows {top}-{top + rows - 1}, columns {left}-{left + cols - 1}"
            raise TiledImageError(f"{self._name} is damaged: the tiles of {where} cannot be decoded ({error}).") from error
        return _to_rgb(np.moveaxis(raw, 0, -1) if self._axes == "SYX" else raw if raw.ndim == 3 else raw[..., None], self._alpha, self._invert)

    def close(self) -> None:
        """Close the TIFF file."""
        self._tiff.close()


def _to_rgb(raw: np.ndarray, alpha: str | None, invert: bool) -> np.ndarray:
    """``(rows, cols, S)`` uint8/uint16 samples as ``(rows, cols, 3)`` uint8 RGB (see the module docstring)."""
    top = np.iinfo(raw.dtype).max
    colour = raw[..., :1] if raw.shape[2] < 3 else raw[..., :3]
    colour = top - colour if invert else colour
    if alpha is None:
        colour = ((colour.astype(np.uint32) + 128) // 257).astype(np.uint8) if raw.dtype == np.uint16 else colour
        return np.ascontiguousarray(np.broadcast_to(colour, (*colour.shape[:2], 3)))
    c, a = colour.astype(np.float32) * np.float32(255) / np.float32(top), raw[..., -1:].astype(np.float32) / np.float32(top)
    out = (c if alpha == "premultiplied" else c * a) + np.float32(255) * (np.float32(1) - a)
    return np.broadcast_to(np.clip(np.rint(out), 0, 255).astype(np.uint8), (*raw.shape[:2], 3)).copy()


def is_tiled_tiff(path: Path | BinaryIO) -> bool:
    """Whether ``path`` (a file, or an open binary file from its start) is a TIFF whose first page is tiled (reads the
    header and first page); never raises."""
    try:
        if not isinstance(path, Path):
            path.seek(0)
        with tifffile.TiffFile(path, name=None if isinstance(path, Path) else "upload.tif") as tiff:
            return bool(tiff.pages.first.is_tiled)
    except Exception:
        return False


def open_tiled_tiff(path: Path | BinaryIO, max_pixels: int, name: str | None = None) -> TiledTiffSource:
    """Open a tiled TIFF or BigTIFF for reading in windows (the caller closes it, or uses it in ``with``).

    Args:
        path: The file, or an open seekable binary file (an upload; closing the source leaves it open).
        max_pixels: The most pixels (height times width) accepted.
        name: What messages call it (default: the file's name).

    Raises:
        TiledImageError: Not a readable tiled TIFF of a supported kind, over ``max_pixels``, or missing or truncated tiles.
    """
    label = name if name is not None else path.name if isinstance(path, Path) else "the file"
    try:
        if not isinstance(path, Path):
            path.seek(0)
        tiff = tifffile.TiffFile(path, name=None if isinstance(path, Path) else label)
    except Exception as error:
        raise TiledImageError(f"{label} is not a readable TIFF file ({error}).") from error
    try:
        return _open(tiff, label, max_pixels)
    except BaseException:
        tiff.close()
        raise


def _open(tiff: tifffile.TiffFile, name: str, max_pixels: int) -> TiledTiffSource:
    if not tiff.series:
        raise TiledImageError(f"{name} is not a readable TIFF file (it holds no image).")
    series, page = tiff.series[0], tiff.series[0].keyframe
    if not (tiff.pages.first.is_tiled and page.is_tiled):
        raise TiledImageError(f"{name} is a striped TIFF: it must be decoded whole; save it as a tiled TIFF to analyse it in windows.")
    if series.axes not in ("YX", "YXS", "SYX"):
        raise TiledImageError(f"{name} holds several images or planes (axes {series.axes}, shape {series.shape}); only one 2-D image is supported.")
    if series.dtype not in (np.uint8, np.uint16) or page.bitspersample != series.dtype.itemsize * 8:
        raise TiledImageError(f"{name} has {page.bitspersample}-bit {series.dtype} samples; only 8- and 16-bit unsigned ones are supported.")
    samples, photometric = page.samplesperpixel, page.photometric
    grey = photometric in (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE)
    if not ((samples in (1, 2) and grey) or (samples in (3, 4) and photometric == PHOTOMETRIC.RGB)):
        kind = PHOTOMETRIC(photometric).name
        raise TiledImageError(f"{name} has {plural(int(samples), 'sample')} per pixel in {kind}; only gray, gray+alpha, RGB and RGBA are supported.")
    if page.compression not in TIFF.DECOMPRESSORS:
        raise TiledImageError(f"{name} uses {COMPRESSION(page.compression).name} compression, which cannot be decoded here (it needs the imagecodecs package).")
    height, width = page.imagelength, page.imagewidth
    if height * width > max_pixels:
        raise TiledImageError(f"{name} has {height * width:,} pixels ({width}x{height}), more than the {max_pixels:,} allowed.", too_large=True)
    _check_tiles(tiff, page, name)
    alpha = None if samples in (1, 3) else "premultiplied" if EXTRASAMPLE.ASSOCALPHA in page.extrasamples else "straight"
    return TiledTiffSource(tiff, name, series.axes, alpha, photometric == PHOTOMETRIC.MINISWHITE)


def _check_tiles(tiff: tifffile.TiffFile, page: tifffile.TiffPage, name: str) -> None:
    """Raise when a tile is missing (no bytes) or ends past the end of the file, naming the first such tile's region."""
    offsets, counts = np.asarray(page.dataoffsets, dtype=np.uint64), np.asarray(page.databytecounts, dtype=np.uint64)
    size, missing = tiff.filehandle.size, counts == 0
    bad = np.flatnonzero(missing | (offsets + counts > size))
    if bad.size:
        across, down = -(-page.imagewidth // page.tilewidth), -(-page.imagelength // page.tilelength)
        tile = int(bad[0]) % (across * down)  # separate planes: the tiles of plane 0, then plane 1, ...
        top, left = tile // across * page.tilelength, tile % across * page.tilewidth
        where = f"rows {top}-{min(top + page.tilelength, page.imagelength) - 1}, columns {left}-{min(left + page.tilewidth, page.imagewidth) - 1}"
        if missing.any():
            absent = int(missing.sum())
            are = word_for(absent, "is", "are")
            raise TiledImageError(f"{name} is incomplete: {absent} of its {plural(counts.size, 'tile')} {are} missing, the first bad one at {where}.")
        end = offsets[bad[0]] + counts[bad[0]]
        raise TiledImageError(f"{name} is truncated: the tile at {where} ends at byte {end:,} but the file has only {size:,} bytes.")
