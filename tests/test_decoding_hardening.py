"""Hostile uploads: the format allow-list (no Ghostscript, ever), bounded metadata and container walks, and probe_image."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from app.defaults import IMAGE_FORMATS
from app.io.containers import MAX_GIF_BLOCKS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS
from app.io.decoding import ImageDecodeError, decode_image, probe_image
from app.io.masks import MaskError, decode_mask

ACCEPTED = "PNG, JPEG, TIFF, BMP, GIF, WebP"


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _photo(width: int = 40, height: int = 24) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _refused(data: bytes, code: str) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert info.value.code == code
    return info.value


def _normal_image_still_decodes() -> None:
    assert decode_image(_encode(_photo(), "PNG")).shape == (24, 40, 3)


@pytest.fixture
def fake_gs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``gs`` first on PATH that records every call in the returned log (Pillow's cached lookup reset)."""
    log = tmp_path / "gs-calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f'#!/bin/sh\necho "gs $*" >> "{log}"\nexit 0\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return log


def test_the_fake_ghostscript_would_be_called_by_plain_pillow(fake_gs: Path) -> None:
    """Control: Pillow left to itself hands an EPS to ``gs`` (so the refusal below is what keeps gs away)."""
    with pytest.raises(OSError), Image.open(io.BytesIO(_encode(_photo(), "EPS"))) as img:
        img.load()
    assert fake_gs.read_text().startswith("gs ")


def test_eps_named_png_is_refused_and_never_reaches_ghostscript(fake_gs: Path, tmp_path: Path) -> None:
    """An EPS (also saved as ``evil.png``) is 'unsupported_media_type' naming the accepted formats; gs is never run."""
    eps = _encode(_photo(), "EPS")
    assert eps.startswith(b"%!PS-Adobe")
    error = _refused(eps, "unsupported_media_type")
    assert ACCEPTED in error.message
    with pytest.raises(ImageDecodeError):
        probe_image(eps)
    with pytest.raises(MaskError) as mask:
        decode_mask(eps, (24, 40))
    assert mask.value.code == "unsupported_media_type"
    path = tmp_path / "evil.png"
    path.write_bytes(eps)
    _refused(path.read_bytes(), "unsupported_media_type")
    assert not fake_gs.exists()
    _normal_image_still_decodes()


OTHER_FORMATS = [
    ("ICO", "RGBA"),
    ("PPM", "RGB"),
    ("TGA", "RGB"),
    ("PCX", "RGB"),
    ("SGI", "RGB"),
    ("IM", "RGB"),
    ("XBM", "1"),
    ("QOI", "RGB"),
    ("DDS", "RGB"),
    ("JPEG2000", "RGB"),
    ("AVIF", "RGB"),
    ("SPIDER", "F"),
    ("ICNS", "RGB"),
]


ALWAYS_WRITABLE = {"ICO", "PPM", "TGA", "PCX", "SGI", "IM", "XBM"}


def _writable(fmt: str, mode: str) -> bytes | None:
    """The format's encoding of a 16x16 image, or None when this Pillow has no writer for it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _encode(Image.new(mode, (16, 16)), fmt)
    except (KeyError, OSError, ValueError):
        return None


WRITABLE_FORMATS = [(fmt, mode) for fmt, mode in OTHER_FORMATS if _writable(fmt, mode) is not None]


def test_the_refusal_table_covers_the_common_other_formats() -> None:
    """Pillow always writes these, so the table below can never shrink to nothing unnoticed."""
    assert {fmt for fmt, _ in WRITABLE_FORMATS} >= ALWAYS_WRITABLE


@pytest.mark.parametrize(("fmt", "mode"), WRITABLE_FORMATS)
def test_formats_outside_the_allow_list_are_refused(fmt: str, mode: str) -> None:
    """Files Pillow would decode, in formats the app does not document, are refused (images and masks) before decoding."""
    data = _writable(fmt, mode)
    assert data is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == fmt
    assert ACCEPTED in _refused(data, "unsupported_media_type").message
    with pytest.raises(ImageDecodeError) as probe:
        probe_image(data)
    assert probe.value.code == "unsupported_media_type"
    with pytest.raises(MaskError) as mask:
        decode_mask(data, (16, 16))
    assert mask.value.code == "unsupported_media_type"
    _normal_image_still_decodes()


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_accepted_formats_decode_and_probe(fmt: str) -> None:
    """PNG, JPEG, TIFF, BMP, GIF and WebP still decode (red left, blue right) and probe to their format and size."""
    data = _encode(_photo(), fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    assert probe_image(data)[:3] == (fmt, 40, 24)
    out = decode_image(data)
    assert out.shape == (24, 40, 3)
    assert np.abs(out[12, 5].astype(int) - (255, 0, 0)).max() < 40
    assert np.abs(out[12, 35].astype(int) - (0, 0, 255)).max() < 40


def test_multi_picture_phone_jpeg_decodes_its_first_picture() -> None:
    """An MPO (what some phones write) decodes as a JPEG: its first picture."""
    first, second = _photo(), Image.new("RGB", (40, 24), (0, 255, 0))
    data = _encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "MPO"
    assert probe_image(data)[:3] == ("JPEG", 40, 24)
    assert np.array_equal(decode_image(data), decode_image(_encode(first, "JPEG", quality=95)))


def test_masks_outside_png_tiff_bmp_are_refused() -> None:
    """A JPEG mask is refused unread; PNG, TIFF and BMP masks decode."""
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    for fmt in ("PNG", "TIFF", "BMP"):
        assert decode_mask(_encode(Image.fromarray(labels), fmt), (2, 3)).tolist() == labels.tolist()
    with pytest.raises(MaskError) as info:
        decode_mask(_encode(Image.fromarray(labels), "JPEG"), (2, 3))
    assert info.value.code == "unsupported_media_type"
    assert "PNG, TIFF, BMP" in info.value.message


def _jpeg_segments(data: bytes) -> tuple[bytes, bytes]:
    """A JPEG's header segments after SOI, and the rest from the first scan."""
    pos = 2
    while data[pos + 1] != 0xDA:
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return data[2:pos], data[pos:]


def _with_segments(data: bytes, extra: bytes) -> bytes:
    header, scan = _jpeg_segments(data)
    return data[:2] + header + extra + scan


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _oriented_jpeg(orientation: int = 6) -> bytes:
    img = _photo()
    exif = img.getexif()
    exif[0x0112] = orientation
    return _encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def test_jpeg_with_722_exif_segments_decodes_fast_and_oriented() -> None:
    """45 MB of EXIF segments (9.6 s before) decode in well under a second, with the first segment's orientation applied."""
    base = _oriented_jpeg(6)
    filler = _segment(0xE1, b"Exif\x00\x00" + bytes(65_525))
    data = _with_segments(base, filler * 722)
    assert len(data) > 45 * 10**6
    started = time.perf_counter()
    out = decode_image(data)
    assert time.perf_counter() - started < 2.0
    assert out.shape == (40, 24, 3)
    assert np.array_equal(out, decode_image(base))
    assert probe_image(data)[:3] == ("JPEG", 40, 24)
    _normal_image_still_decodes()


def test_metadata_decoding_does_not_need_is_dropped_without_changing_pixels() -> None:
    """ICC profiles, comments, Photoshop blocks and fill bytes are skipped; the pixels are those of the plain file."""
    plain = _encode(_photo(), "JPEG", quality=95)
    icc = _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(5000))
    photoshop = _segment(0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x00" * 2000)
    noisy = _with_segments(plain, icc + photoshop + _segment(0xFE, b"hello") + b"\xff" * 1000)
    assert np.array_equal(decode_image(noisy), decode_image(plain))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_unreadable_exif_means_no_rotation_not_a_failure() -> None:
    """A JPEG whose EXIF block is garbage decodes unrotated (Pillow warns, as it does in production)."""
    plain = _encode(_photo(), "JPEG", quality=95)
    garbage = _with_segments(plain, _segment(0xE1, b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + bytes(40)))
    assert np.array_equal(decode_image(garbage), decode_image(plain))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_chunks(count: int) -> bytes:
    data = _encode(_photo(8, 8), "PNG")
    return data[:33] + _png_chunk(b"abCd", b"") * count + data[33:]


def _gif_with_comments(count: int) -> bytes:
    data = _encode(Image.new("P", (8, 8)), "GIF")
    image = data.index(b"\x2c", 13)
    return data[:image] + b"\x21\xfe\x01a\x00" * count + data[image:]


@pytest.mark.parametrize(
    ("name", "hostile", "fine"),
    [
        ("PNG chunks", lambda: _png_with_chunks(4 * MAX_PNG_CHUNKS), lambda: _png_with_chunks(1000)),
        ("GIF comments", lambda: _gif_with_comments(4 * MAX_GIF_BLOCKS), lambda: _gif_with_comments(1000)),
        (
            "JPEG comments",
            lambda: _with_segments(_oriented_jpeg(), _segment(0xFE, b"") * (4 * MAX_JPEG_SEGMENTS)),
            lambda: _with_segments(_oriented_jpeg(), _segment(0xFE, b"") * 1000),
        ),
        (
            "JPEG tables",
            lambda: _with_segments(_oriented_jpeg(), _segment(0xDB, (b"\x00" + bytes(range(1, 65))) * 1000) * 20),
            lambda: _with_segments(_oriented_jpeg(), _segment(0xDB, b"\x00" + bytes(range(1, 65))) * 3),
        ),
    ],
)
def test_floods_of_blocks_are_refused_at_once(name: str, hostile: object, fine: object) -> None:
    """Millions of tiny chunks or blocks (seconds of Pillow's Python-level parsing) are 'corrupt_image' at once; a few are fine."""
    assert callable(hostile) and callable(fine)
    data = hostile()
    started = time.perf_counter()
    error = _refused(data, "corrupt_image")
    assert time.perf_counter() - started < 2.0, name
    assert "limits" in error.message
    assert decode_image(fine()).shape[2] == 3
    _normal_image_still_decodes()


def test_probe_reads_the_header_only() -> None:
    """A '1.5 KB JPEG that claims 4000×4000' probes to its claimed size, and is refused over the pixel limit, decoding nothing."""
    small = _encode(Image.new("RGB", (8, 8), (200, 10, 10)), "JPEG")
    sof = small.index(b"\xff\xc0")
    claims = small[: sof + 5] + struct.pack(">HH", 4000, 4000) + small[sof + 9 :]
    assert len(claims) < 1500
    assert probe_image(claims)[:3] == ("JPEG", 4000, 4000)
    with pytest.raises(ImageDecodeError) as info:
        probe_image(claims, max_pixels=4000 * 4000 - 1)
    assert info.value.code == "too_many_pixels"
    png = _encode(Image.fromarray(np.zeros((300, 200, 3), np.uint8)), "PNG")
    assert probe_image(png[:100])[:3] == ("PNG", 200, 300)
    for data in (b"", b"not an image"):
        with pytest.raises(ImageDecodeError) as empty:
            probe_image(data)
        assert empty.value.code == "unsupported_media_type"
