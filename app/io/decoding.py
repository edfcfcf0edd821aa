"""Decode uploads to 8-bit RGB, within bounds of structure, pixels and cost, and stoppable by a cancel token.

Only the documented formats are opened (:data:`~app.defaults.IMAGE_FORMATS`: PNG, JPEG, TIFF, BMP, GIF,
WebP); any other file, EPS/PS/PDF included, is refused before a decoder (or Ghostscript) sees it. A file that starts
with the signature of one of them but cannot be read is corrupt, not of another type. The container's structure is
bounded first (:mod:`app.io.containers`: a JPEG's scans included), and the pixel limit is checked from the header,
before any pixel is decoded; :func:`probe_image` reports what the decoding will cost (:mod:`app.io.decode_cost`).

Pixels are decoded from a :class:`~app.io.cancellable_read.CancellableReader`, so a cancel token (a deadline, a
client gone, Ctrl-C) stops a decode between two blocks of its file. Decoding applies the EXIF orientation (reading
that one tag only) and turns every PIL mode into 8-bit RGB band by band (:mod:`app.io.to_rgb`; alpha composited on
**white**, ICC profiles not applied). Animated files give their first frame. :func:`decode_resized` decodes straight
to the size an image is analysed at: a JPEG through libjpeg's DCT scaling (``draft``) to no less than
:data:`~app.io.resize.REDUCING_GAP` times that size, then every format with the Lanczos filter of :mod:`app.io.resize`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from app.defaults import IMAGE_FORMATS, MAX_PIXELS
from app.engine.cancel import CancelToken
from app.error_codes import ErrorCode
from app.io.cancellable_read import CancellableReader
from app.io.containers import ContainerError, bound_container
from app.io.resize import REDUCING_GAP
from app.io.to_rgb import rgb_array, rgb_image

__all__ = ["Decoded", "ImageDecodeError", "ImageHeader", "container_error", "decode_image", "decode_resized", "open_image", "probe_image"]

FORMAT_NAMES = {"WEBP": "WebP"}
ORIENTATION_TAG = 0x0112
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TRANSPOSED = frozenset({5, 6, 7, 8})
DecodeError = (OSError, ValueError, SyntaxError, EOFError, struct.error)


class ImageDecodeError(ValueError):
    """An upload that cannot become an RGB image.

    Attributes:
        code: :attr:`~app.error_codes.ErrorCode.UNSUPPORTED_MEDIA_TYPE`, ``CORRUPT_IMAGE`` or ``TOO_MANY_PIXELS``.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ImageHeader(NamedTuple):
    """What an image's header says, before any pixel is decoded.

    Attributes:
        format: Pillow's format name, one of :data:`~app.defaults.IMAGE_FORMATS` (a multi-picture phone
            JPEG is a ``"JPEG"``: its picture index is dropped with the other metadata and its first picture decoded).
        width: Stored width in pixels (before EXIF orientation).
        height: Stored height in pixels (before EXIF orientation).
        mode: The PIL mode the pixels decode to (``"I;16"``, ``"RGBA"``, ``"P"``, ...).
        scans: A JPEG's scans (start-of-scan markers before its end); 0 for other formats.
        file_bytes: The encoded file's size.
        orientation: The EXIF orientation (1: none); ``None`` when the header does not tell (a PNG may carry its
            EXIF after its pixels).
        decoder: PIL's decoder of the pixels (``"jpeg"``, ``"zip"``, ``"raw"``, ``"bmp_rle"``, ``"libtiff"``, ...; ``""``
            for WebP, which libwebp decodes whole).
        tiles: The pieces PIL decodes one by one (a raw TIFF's strips or tiles; 1 for most files).
        tiled: A tiled TIFF beyond the decoded images' pixel limit, to be read tile by tile (never decoded whole).
    """

    format: str
    width: int
    height: int
    mode: str = "RGB"
    scans: int = 0
    file_bytes: int = 0
    orientation: int | None = 1
    decoder: str = ""
    tiles: int = 1
    tiled: bool = False


class Decoded(NamedTuple):
    """A decoded image and the size it was stored at.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB.
        size: ``(H, W)`` of the whole stored image after EXIF orientation (``rgb``'s own shape unless it was resized).
    """

    rgb: np.ndarray
    size: tuple[int, int]


def _format_list(formats: Sequence[str]) -> str:
    return ", ".join(FORMAT_NAMES.get(f, f) for f in formats)


def container_error(exc: ContainerError) -> ImageDecodeError:
    """The ``corrupt_image`` refusal of a file beyond the structural bounds of :mod:`app.io.containers`."""
    return ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image file exceeds safe structural limits: {exc}")


def _signed(data: bytes, formats: Sequence[str]) -> bool:
    """Whether ``data`` starts with the signature of one of ``formats`` (PIL's own test of each format)."""
    Image.init()
    return any(fmt in Image.OPEN and (accept := Image.OPEN[fmt][1]) is not None and bool(accept(data[:16])) for fmt in formats)


def _open(data: bytes, formats: Sequence[str], max_pixels: int | None, cancel: CancelToken | None) -> tuple[Image.Image, CancellableReader]:
    """The opened image (header read, sizes checked) and the reader its pixels will be decoded from."""
    if not data:
        raise ImageDecodeError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "the file is empty")
    try:
        container = bound_container(data, formats)
        reader = CancellableReader(container.data, cancel, container.scans)
        img: Image.Image = Image.open(reader, formats=list(formats))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        if _signed(data, formats):
            raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, "the image header could not be read: the file is truncated or damaged") from exc
        raise ImageDecodeError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"the file is not an image in an accepted format ({_format_list(formats)})") from exc
    except ContainerError as exc:
        raise container_error(exc) from exc
    except DecodeError as exc:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image header could not be read: {exc}") from exc
    except Warning as exc:  # raised only where warnings are errors (Pillow warns, e.g., of a TIFF tag past the file's end)
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image header is damaged: {exc}") from exc
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, f"image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"image has no pixels ({width}x{height})")
    return img, reader


def open_image(data: bytes, formats: Sequence[str] = IMAGE_FORMATS, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Open ``data`` as one of ``formats`` and check its size, reading its header only.

    Args:
        data: The encoded file.
        formats: Pillow format names accepted; any other format is refused unread.
        max_pixels: Largest ``width * height`` accepted (``None``: only Pillow's decompression-bomb limit).

    Raises:
        ImageDecodeError: empty or another format (``unsupported_media_type``), an unreadable header or
            container, a truncated file of an accepted format included (``corrupt_image``), or more than
            ``max_pixels`` pixels (``too_many_pixels``).
    """
    return _open(data, formats, max_pixels, None)[0]


def probe_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """What the header of ``data`` says (:class:`ImageHeader`), with the checks of :func:`decode_image`, decoding no pixel.

    Raises:
        ImageDecodeError: as :func:`decode_image` would for the header (format, structure, scans, pixel limit).
    """
    img, reader = _open(data, IMAGE_FORMATS, max_pixels, None)
    with img:
        orientation = None if img.format == "PNG" and "exif" not in img.info else _orientation(img)
        tiles = img.tile if isinstance(img, ImageFile.ImageFile) else []
        decoder = str(tiles[0][0]) if tiles else ""
        return ImageHeader(str(img.format), img.size[0], img.size[1], img.mode, len(reader.cuts), len(data), orientation, decoder, max(1, len(tiles)))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable: metadata never makes an image fail)."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, *, cancel: CancelToken | None = None) -> np.ndarray:
    """Decode image bytes to ``(H, W, 3)`` uint8 RGB.

    Args:
        data: The encoded file.
        max_pixels: Largest ``width * height`` accepted; checked before decoding pixels.
        cancel: Checked between blocks of the file and bands of the conversion.

    Raises:
        ImageDecodeError: not an image of an accepted format, corrupt or truncated, or too many pixels.
        app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled.
    """
    return _decode(data, max_pixels, cancel, None).rgb


def decode_resized(
    data: bytes, shape_for: Callable[[int, int], tuple[int, int]], max_pixels: int = MAX_PIXELS, *, cancel: CancelToken | None = None
) -> Decoded:
    """Decode image bytes straight to the size ``shape_for`` gives for the whole image, as :func:`decode_image` then
    :func:`~app.io.resize.resize_rgb` would, a large JPEG decoded reduced (``draft``) to no less than
    :data:`~app.io.resize.REDUCING_GAP` times that size first.

    Args:
        data: The encoded file.
        shape_for: ``(H, W)`` of the whole image after EXIF orientation → the ``(H, W)`` wanted (never larger).
        max_pixels: Largest ``width * height`` accepted; checked before decoding pixels.
        cancel: As in :func:`decode_image`.

    Raises:
        ImageDecodeError, app.engine.cancel.AnalysisCancelled: as :func:`decode_image`.
    """
    return _decode(data, max_pixels, cancel, shape_for)


def _decode(data: bytes, max_pixels: int, cancel: CancelToken | None, shape_for: Callable[[int, int], tuple[int, int]] | None) -> Decoded:
    img, reader = _open(data, IMAGE_FORMATS, max_pixels, cancel)
    try:
        stored = (img.height, img.width)
        if shape_for is not None and img.format == "JPEG":
            _draft(img, stored, _orientation(img), shape_for)
        with reader.loading():
            img.load()
        orientation = _orientation(img)
        size = stored[::-1] if orientation in TRANSPOSED else stored
        method = TRANSPOSE.get(orientation)
        if method is not None:
            img = img.transpose(method)
        shape = size if shape_for is None else shape_for(*size)
        if (img.height, img.width) == shape:
            return Decoded(rgb_array(img, cancel), size)
        resized = rgb_image(img, cancel).resize(shape[::-1], Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        return Decoded(np.asarray(resized), size)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except DecodeError as exc:
        raise ImageDecodeError(ErrorCode.CORRUPT_IMAGE, f"the image data is corrupt or truncated: {exc}") from exc


def _draft(img: Image.Image, stored: tuple[int, int], orientation: int, shape_for: Callable[[int, int], tuple[int, int]]) -> None:
    """Have libjpeg scale the JPEG ``img`` down by 2, 4 or 8 in its DCT while it stays at least ``REDUCING_GAP`` times the wanted size."""
    transposed = orientation in TRANSPOSED
    rows, cols = shape_for(*(stored[::-1] if transposed else stored))
    if transposed:
        rows, cols = cols, rows
    img.draft(None, (int(REDUCING_GAP * cols), int(REDUCING_GAP * rows)))
