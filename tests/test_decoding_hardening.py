"""Hostile uploads: the format allow-list (no Ghostscript, ever), bounded metadata and container walks (JPEG scans and
TIFF strips included), probe_image, the banded RGB conversion, reduced decoding and decodes stopped by a cancel token."""

from __future__ import annotations

import io
import math
import os
import random
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import progressive_scan_bomb, tiff_strips
from PIL import EpsImagePlugin, Image, TiffImagePlugin

import app.io.containers as containers
import app.io.to_rgb as to_rgb
from app.defaults import IMAGE_FORMATS
from app.engine.cancel import AnalysisCancelled, CancelToken
from app.io.cancellable_read import CancellableReader
from app.io.containers import MAX_GIF_BLOCKS, MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS, MAX_TIFF_ENTRIES, MAX_TIFF_STRIPS
from app.io.decode_cost import draft_scale
from app.io.decoding import ImageDecodeError, decode_image, decode_resized, probe_image
from app.io.jpeg_scans import JpegScans, scan_offsets
from app.io.masks import MaskError, decode_mask
from app.io.resize import resize_rgb, working_shape
from app.io.tiff_ifd import tiff_layout

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


@pytest.mark.parametrize(("mode", "scans"), [("L", 6), ("RGB", 10), ("CMYK", 18)])
def test_scans_are_counted_as_libjpeg_reads_them(mode: str, scans: int) -> None:
    """libjpeg's progressive script writes 6 scans for grey, 10 for colour, 18 for CMYK; a baseline JPEG has one; markers inside
    a segment (a comment between scans, an EXIF thumbnail) and the pictures after the first's end do not count."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).convert(mode)
    progressive = _encode(img, "JPEG", progressive=True)
    assert probe_image(progressive).scans == scans
    assert probe_image(_encode(img, "JPEG")).scans == 1
    second = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)
    hidden = _segment(0xFE, b"\xff\xda\x00\x08\xff\xd9 fake") + _segment(0xE1, b"Exif\x00\x00\xff\xd8\xff\xda\x00\x02\xff\xd9")
    assert probe_image(progressive[:second] + hidden + progressive[second:]).scans == scans
    thumbnail = _segment(0xE1, b"Exif\x00\x00" + _encode(img, "JPEG", progressive=True))
    assert probe_image(_with_segments(progressive, thumbnail)).scans == scans
    assert probe_image(progressive + _encode(img, "JPEG", progressive=True)).scans == scans


def test_the_scan_walk_is_the_same_over_any_chunks() -> None:
    """Fed in chunks cut anywhere (inside a marker, its length, fill bytes or a stuffed 0xFF), the walk finds the same scans."""
    data = _with_segments(progressive_scan_bomb(64, 48, 20), b"\xff" * 7 + _segment(0xFE, b"\xff\x00\xff\xda"))
    whole = scan_offsets(data)
    assert whole.done and len(whole.offsets) == 21
    assert all(data[o : o + 2] == b"\xff\xda" for o in whole.offsets)
    rng = random.Random(0)
    for _ in range(50):
        walk, pos = JpegScans(10_000), 0
        while pos < len(data):
            step = rng.choice([1, 2, 3, 5, 64])
            walk.feed(data[pos : pos + step])
            pos += step
        assert walk.offsets == whole.offsets and walk.done


def test_a_scan_bomb_is_refused_before_decoding() -> None:
    """The cap's JPEG (1 + 63 scans) decodes; one scan more is 'corrupt_image' at once, even with a fake end of image hidden in a
    comment between its scans; so is a flood of markers after the header."""
    assert MAX_JPEG_SCANS == 64
    assert decode_image(progressive_scan_bomb(64, 48, MAX_JPEG_SCANS - 1)).shape == (48, 64, 3)
    over = progressive_scan_bomb(6000, 6000, 1000)
    started = time.perf_counter()
    assert "1001 scans" in _refused(over, "corrupt_image").message
    assert time.perf_counter() - started < 1.0
    assert "65 scans" in _refused(progressive_scan_bomb(64, 48, MAX_JPEG_SCANS), "corrupt_image").message
    bomb = progressive_scan_bomb(64, 48, 100)
    second = bomb.index(b"\xff\xda", bomb.index(b"\xff\xda") + 2)
    assert "101 scans" in _refused(bomb[:second] + _segment(0xFE, b"\xff\xd9") + bomb[second:], "corrupt_image").message
    flood = bomb[:second] + _segment(0xFE, b"") * (MAX_JPEG_SEGMENTS + 1) + bomb[second:]
    assert "markers" in _refused(flood, "corrupt_image").message


def test_tiff_directories_and_strips_are_bounded() -> None:
    """A TIFF of more strips than the cap, or of more directory entries, is refused before Pillow builds its tiles; at the cap
    it decodes; the layout reads classic TIFF and BigTIFF alike."""
    assert "strips" in _refused(tiff_strips(8, MAX_TIFF_STRIPS + 1), "corrupt_image").message
    assert decode_image(tiff_strips(8, 1000)).shape == (1000, 8, 3)
    entries = _encode(Image.new("L", (8, 8)), "TIFF")
    ifd = struct.unpack("<I", entries[4:8])[0]
    flood = entries[:ifd] + struct.pack("<H", MAX_TIFF_ENTRIES + 1) + entries[ifd + 2 :]
    assert "entries" in _refused(flood, "corrupt_image").message
    for big in (False, True):
        data = _encode(Image.new("L", (8, 4000)), "TIFF", big_tiff=big, compression="tiff_adobe_deflate", strip_size=64)
        with Image.open(io.BytesIO(data)) as img:
            layout = tiff_layout(data, MAX_TIFF_ENTRIES)
            assert isinstance(img, TiffImagePlugin.TiffImageFile)
            assert layout is not None and layout.strips == len(img.tag_v2[273]) == 500


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_a_truncated_file_of_an_accepted_format_is_corrupt(fmt: str) -> None:
    """A file that starts with an accepted format's signature but cannot be read is 'corrupt_image' (422), not of another type."""
    data = _encode(_photo(), fmt)
    for size in (16, 40):
        _refused(data[:size], "corrupt_image")
    _refused(b"GIF87a but not really an image", "corrupt_image")
    _refused(b"just some text, 40 bytes of it.........", "unsupported_media_type")


def _old_rgb(img: Image.Image) -> np.ndarray:
    """The whole-image conversion the banded one replaced (float64 copies of everything), as the reference."""
    mode = img.mode
    if mode.startswith("I;16"):
        gray = np.clip(np.rint(np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 1.0 if arr.max() <= 255 else 255.0 / 65535.0
        scale = 255.0 if mode == "F" and arr.max() <= 1.0 else scale
        return np.repeat(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, img.convert("RGBA")).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _modes() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    shape = (37, 23)
    sixteen = Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))
    sixteen.putpixel((0, 0), 257 * 7 + 128)
    rgba = Image.fromarray(rng.integers(0, 256, (*shape, 4), dtype=np.uint8))
    palette = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = 5
    gray = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    gray.info["transparency"] = 7
    return [
        sixteen,
        Image.fromarray(rng.integers(-300, 300, shape, dtype=np.int32)),
        Image.fromarray(rng.integers(0, 200, shape, dtype=np.int32)),
        Image.fromarray(rng.integers(0, 70000, shape, dtype=np.int32)),
        Image.fromarray(rng.random(shape, dtype=np.float32)),
        Image.fromarray((rng.random(shape) * 300 - 20).astype(np.float32)),
        rgba,
        rgba.convert("LA"),
        palette,
        gray,
        rgba.convert("CMYK"),
        gray.convert("1"),
    ]


def test_the_banded_conversion_equals_the_whole_image_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mode converts to the same RGB as the old whole-image float64 code, across many bands (a partial last one too)."""
    monkeypatch.setattr(to_rgb, "BAND_PIXELS", 23 * 4)
    for img in _modes():
        expected = _old_rgb(img)
        assert np.array_equal(to_rgb.rgb_array(img), expected), img.mode
        assert np.array_equal(np.asarray(to_rgb.rgb_image(img)), expected), img.mode


def test_decoding_to_the_analysed_size_equals_decoding_then_resizing() -> None:
    """Not a JPEG: exactly the full decode resized. A JPEG is decoded reduced by libjpeg (to the scale the cost estimate
    assumes) to no less than 3x the analysed size: the same shapes, pixels within a few levels."""
    sixteen = Image.fromarray(np.random.default_rng(2).integers(0, 65536, (700, 900), dtype=np.uint16))
    for data in (_encode(sixteen, "PNG"), _encode(_photo(900, 700).convert("RGBA"), "PNG")):
        shape = working_shape(700, 900, 256)
        rgb, size = decode_resized(data, lambda h, w: working_shape(h, w, 256))
        assert size == (700, 900) and np.array_equal(rgb, resize_rgb(decode_image(data), shape))
    smooth = np.asarray(Image.fromarray(np.random.default_rng(3).integers(0, 256, (9, 16, 3), dtype=np.uint8)).resize((4000, 2250), Image.Resampling.BICUBIC))
    for orientation in (1, 6):
        img = Image.fromarray(smooth)
        exif = img.getexif()
        exif[0x0112] = orientation
        data = _encode(img, "JPEG", quality=95, exif=exif.tobytes())
        full = decode_image(data)
        rgb, size = decode_resized(data, lambda h, w: working_shape(h, w, 256))
        assert size == full.shape[:2] and rgb.shape[:2] == working_shape(*size, 256)
        assert np.abs(rgb.astype(int) - resize_rgb(full, rgb.shape[:2]).astype(int)).mean() < 1.0
    with Image.open(io.BytesIO(_encode(Image.fromarray(smooth), "JPEG"))) as img:
        img.draft(None, (3 * 256, 3 * 144))
        scale = draft_scale(4000, 2250, (144, 256))
        assert scale == 4 and img.size == (math.ceil(4000 / scale), math.ceil(2250 / scale))
    assert draft_scale(300, 200, (200, 300)) == draft_scale(700, 500, (180, 256)) == 1


def _without_scan_cap(monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(containers, "MAX_JPEG_SCANS", 5000)
    return progressive_scan_bomb(6000, 6000, 1000)


@pytest.mark.slow
def test_a_deadline_stops_a_decode_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1000-scan JPEG (22 s in libjpeg), let past the cap, stops within a second of its token's deadline, and within a second
    of a cancel from another thread."""
    bomb = _without_scan_cap(monkeypatch)
    token = CancelToken(deadline=time.monotonic() + 0.5)
    started = time.monotonic()
    with pytest.raises(AnalysisCancelled, match="deadline"):
        decode_image(bomb, cancel=token)
    assert time.monotonic() - started < 1.5
    token = CancelToken()
    threading.Timer(0.5, token.cancel, ("disconnected",)).start()
    started = time.monotonic()
    with pytest.raises(AnalysisCancelled, match="disconnected"):
        decode_resized(bomb, lambda h, w: working_shape(h, w, 256), cancel=token)
    assert time.monotonic() - started < 1.5


def test_reads_stop_at_each_scan_while_pixels_are_decoded() -> None:
    """While loading, no read crosses a start of scan (libjpeg gets one scan per call); a header parser's reads are not cut; a
    cancelled token stops the next read."""
    data = progressive_scan_bomb(64, 48, 5)
    cuts = scan_offsets(data).offsets
    reader = CancellableReader(data, None, cuts)
    assert reader.read(len(data)) == data
    reader.seek(0)
    with reader.loading():
        pieces = iter(lambda: reader.read(65536), b"")
        ends = list(np.cumsum([len(piece) for piece in pieces]))
    assert ends == [*cuts, len(data)]
    token = CancelToken()
    reader = CancellableReader(data, token, cuts)
    token.cancel("shutdown")
    with pytest.raises(AnalysisCancelled, match="shutdown"):
        reader.read(4096)


def test_a_big_jpeg_decoded_reduced_is_analysed_alike() -> None:
    """The default model on 4096x4096 JPEG scenes: decoded reduced (``analyze_bytes``) or whole then resized, the analysed shape and
    input size are the same and the predictions agree on >= 99 % of pixels (99.8-99.9 % measured); evaluate decodes alike."""
    from app.io.bundle import load_bundle
    from app.io.synthetic import make_scene
    from app.request import AnalysisRequest
    from app.workflows.analyzer import Analyzer
    from app.workflows.labelled import analyze_labelled

    analyzer = Analyzer(load_bundle("default"))
    request = AnalysisRequest(samples=0)
    for index in range(2):
        scene = make_scene("test", index, size=256)
        data = _encode(Image.fromarray(scene.image).resize((4096, 4096), Image.Resampling.LANCZOS), "JPEG", quality=92)
        reduced = analyzer.analyze_bytes(data, request)
        whole = analyzer.analyze_image(decode_image(data), request)
        assert reduced.input_size == whole.input_size == (4096, 4096)
        assert reduced.prediction.shape == whole.prediction.shape == (256, 256)
        assert (reduced.prediction == whole.prediction).mean() >= 0.99
        mask = _encode(Image.fromarray(np.zeros((4096, 4096), np.uint8)), "PNG")
        assert np.array_equal(analyze_labelled(analyzer, data, mask, request).analysis.prediction, reduced.prediction)
