"""Decode time of crafted uploads that make Pillow's Python-level parsers slow, and of a normal photo.

Each file is at most about 50 MB (the upload limit). Before the container bounds (``app.io.containers``), on a
shared 2-core machine (one round): 722 EXIF segments 10.3 s, 12 M JPEG comments 11.4 s, 25 M JPEG fill bytes
12.6 s, 4 M PNG chunks 11.0 s, 10 M GIF comment blocks 5.0 s; the normal photo 0.09 s. Target: every crafted
file is decoded or refused in under 0.1 s, and the normal photo costs what it did.

Usage: python benchmarks/hostile_decode.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.io.decoding import ImageDecodeError, decode_image


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _jpeg_with(extra: bytes) -> bytes:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    data = _encode(img, "JPEG", exif=exif.tobytes())
    scan = data.index(b"\xff\xda")
    return data[:scan] + extra + data[scan:]


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _png_chunks(count: int) -> bytes:
    data = _encode(Image.new("RGB", (8, 8)), "PNG")
    chunk = struct.pack(">I", 0) + b"abCd" + struct.pack(">I", zlib.crc32(b"abCd"))
    return data[:33] + chunk * count + data[33:]


def _gif_comments(count: int) -> bytes:
    data = _encode(Image.new("P", (8, 8)), "GIF")
    image = data.index(b"\x2c", 13)
    return data[:image] + b"\x21\xfe\x01a\x00" * count + data[image:]


def _photo() -> bytes:
    try:
        from skimage import data

        rgb = data.chelsea()
    except ImportError:
        rgb = np.random.default_rng(1).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    return _encode(Image.fromarray(rgb).resize((4000, 3000)), "JPEG", quality=90)


CASES: dict[str, Callable[[], bytes]] = {
    "JPEG, 722 EXIF segments": lambda: _jpeg_with(_segment(0xE1, b"Exif\x00\x00" + bytes(65_525)) * 722),
    "JPEG, 12 M comments": lambda: _jpeg_with(_segment(0xFE, b"") * 12_000_000),
    "JPEG, 25 M fill bytes": lambda: _jpeg_with(b"\xff" * 25_000_000),
    "PNG, 4 M chunks": lambda: _png_chunks(4_000_000),
    "GIF, 10 M comment blocks": lambda: _gif_comments(10_000_000),
    "normal 4000x3000 JPEG": _photo,
}


def main() -> None:
    """Print size, best decode time and outcome of each case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'file':<28} {'MB':>6} {'seconds':>8}  outcome")
    for name, make in CASES.items():
        data = make()
        best, outcome = float("inf"), ""
        for _ in range(args.rounds):
            started = time.perf_counter()
            try:
                outcome = "decoded {}x{}".format(*decode_image(data).shape[1::-1])
            except ImageDecodeError as exc:
                outcome = f"{exc.code}: {exc.message}"
            best = min(best, time.perf_counter() - started)
        print(f"{name:<28} {len(data) / 1e6:6.1f} {best:8.4f}  {outcome}")


if __name__ == "__main__":
    main()
