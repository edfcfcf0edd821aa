"""Ground-truth masks: pair them with images, check and decode them.

A mask is a single-channel image of class indices with its image's width and height, in one of
:data:`~app.defaults.MASK_FORMATS` (PNG, TIFF, BMP); any other format is refused unread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from app.defaults import IMAGE_SUFFIXES, MASK_FORMATS, MASK_SUFFIXES
from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError, open_image

__all__ = ["MASK_MODES", "DatasetError", "MaskError", "check_mask", "check_mask_size", "decode_mask", "pair_files", "read_mask"]

MASK_MODES = ("L", "P", "I", "I;16", "1")


class DatasetError(ValueError):
    """Images and masks that do not pair up."""


class MaskError(DatasetError):
    """A mask that cannot be scored against its image.

    Attributes:
        code: :attr:`~app.error_codes.ErrorCode.UNSUPPORTED_MEDIA_TYPE` (not an image), ``CORRUPT_MASK``,
            ``MASK_NOT_SINGLE_CHANNEL`` or ``MASK_SIZE_MISMATCH``.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pair_files(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """Match images to masks by file stem.

    Raises:
        DatasetError: naming every image without a mask (and empty folders).
    """
    if not images.is_dir():
        raise DatasetError(f"image folder {images} does not exist")
    if not masks.is_dir():
        raise DatasetError(f"mask folder {masks} does not exist")
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in MASK_SUFFIXES}
    pairs, missing = [], []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if img.stem in mask_by_stem:
            pairs.append((img, mask_by_stem[img.stem]))
        else:
            missing.append(img.name)
    if missing:
        raise DatasetError(f"no mask in {masks} for: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if not pairs:
        raise DatasetError(f"no images in {images}")
    return pairs


def check_mask_size(width: int, height: int, name: str, size: tuple[int, int]) -> None:
    """Refuse a mask of ``width × height`` for an image of ``size = (H, W)``.

    Raises:
        MaskError: ``mask_size_mismatch``.
    """
    if (height, width) != size:
        raise MaskError(ErrorCode.MASK_SIZE_MISMATCH, f"{name}: mask is {width}x{height} but the image is {size[1]}x{size[0]}")


def check_mask(img: Image.Image, name: str, size: tuple[int, int]) -> None:
    """Check an opened mask's mode and size from its header, before any pixel is decoded.

    Raises:
        MaskError: the mask is not single-channel, or its size is not ``size`` (``(H, W)``).
    """
    if img.mode not in MASK_MODES:
        raise MaskError(ErrorCode.MASK_NOT_SINGLE_CHANNEL, f"{name}: mask must be a single-channel image of class indices, got mode {img.mode}")
    check_mask_size(img.size[0], img.size[1], name, size)


def decode_mask(data: bytes, size: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Decode mask bytes (e.g. an uploaded PNG of class indices) to int64 ``(H, W)``.

    Args:
        data: The encoded mask.
        size: The image's ``(H, W)``; the mask must match it.
        name: How messages call the mask.

    Raises:
        MaskError: not an image, truncated, not single-channel, or of another size.
    """
    try:
        img = open_image(data, MASK_FORMATS, max_pixels=None)
    except ImageDecodeError as exc:
        if exc.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE:
            accepted = ", ".join(MASK_FORMATS)
            raise MaskError(exc.code, f"{name}: not an image in an accepted mask format ({accepted}); send a single-channel PNG of class indices") from exc
        if exc.code is ErrorCode.TOO_MANY_PIXELS:
            raise MaskError(ErrorCode.MASK_SIZE_MISMATCH, f"{name}: the mask has far more pixels than the image ({size[1]}x{size[0]})") from exc
        raise MaskError(ErrorCode.CORRUPT_MASK, f"{name}: the mask file is corrupt ({exc.message})") from exc
    with img:
        check_mask(img, name, size)
        try:
            return np.asarray(img, dtype=np.int64)
        except (OSError, SyntaxError, ValueError) as exc:
            raise MaskError(ErrorCode.CORRUPT_MASK, f"{name}: the mask file is corrupt or truncated ({exc})") from exc


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """:func:`decode_mask` of a file, named by its file name in messages."""
    return decode_mask(path.read_bytes(), size, path.name)
