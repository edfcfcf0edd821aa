"""Decoding odd images to RGB, error codes, and padding to the stride and back."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.geometry import crop, pad_to_stride, to_tensor
from app.io.decoding import ImageDecodeError, decode_image


def _encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _half_red(width: int = 40, height: int = 20) -> Image.Image:
    """A landscape image: left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _is_red(pixel: np.ndarray) -> bool:
    return bool(pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60)


def _is_blue(pixel: np.ndarray) -> bool:
    return bool(pixel[2] > 200 and pixel[0] < 60 and pixel[1] < 60)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (33, 97), (97, 33), (2, 1)])
def test_odd_sizes_round_trip_exactly(h: int, w: int) -> None:
    """RGB PNGs of odd sizes decode to the same (H, W, 3) uint8 pixels."""
    arr = _rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(arr)))
    assert out.dtype == np.uint8
    assert out.shape == (h, w, 3)
    assert np.array_equal(out, arr)


def test_sixteen_bit_grayscale_scaled_by_255_over_65535() -> None:
    """A 16-bit grayscale PNG is scaled by 255/65535 (rounded) into all three channels."""
    values = np.array([[0, 257, 1000, 32768], [40000, 65280, 65535, 128]], dtype=np.uint16)
    img = Image.frombytes("I;16", (4, 2), values.astype("<u2").tobytes())
    assert img.mode == "I;16"
    out = decode_image(_encode(img))
    expected = np.rint(values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    assert out.shape == (2, 4, 3)
    assert expected.tolist() == [[0, 1, 4, 128], [156, 254, 255, 0]]
    for k in range(3):
        assert np.array_equal(out[..., k], expected)


@pytest.mark.parametrize(("orientation", "red_at"), [(6, "top"), (8, "bottom"), (3, "right"), (1, "left")])
def test_exif_orientation_is_applied(orientation: int, red_at: str) -> None:
    """A 40×20 JPEG with a red left half is rotated per its EXIF tag; the red half ends where the rotation puts it."""
    img = _half_red()
    exif = img.getexif()
    exif[0x0112] = orientation
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    rotated = orientation in (6, 8)
    assert out.shape == ((40, 20, 3) if rotated else (20, 40, 3))
    h, w = out.shape[:2]
    first = out[h // 4, w // 4]  # top-left quadrant centre
    last = out[3 * h // 4, 3 * w // 4]  # bottom-right quadrant centre
    if red_at in ("top", "left"):
        assert _is_red(first) and _is_blue(last)
    else:
        assert _is_blue(first) and _is_red(last)


def test_rgba_composited_on_white() -> None:
    """Transparent → white, opaque kept, half transparent blended with white."""
    arr = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 200, 128]]], dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(arr, "RGBA")))
    a = 128 / 255
    blended = np.rint(np.array([0, 0, 200]) * a + 255 * (1 - a))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [10, 20, 30]
    assert np.abs(out[0, 2].astype(int) - blended).max() <= 1


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_composited_on_white(fmt: str) -> None:
    """The transparent palette index becomes white; other indices keep their colour."""
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    for x, index in enumerate((0, 1, 2)):
        img.putpixel((x, 0), index)
    out = decode_image(_encode(img, fmt, transparency=0))
    assert out.tolist() == [[[255, 255, 255], [0, 255, 0], [0, 0, 255]]]


def test_palette_without_transparency_expanded() -> None:
    """A plain palette image expands to its palette colours."""
    img = Image.new("P", (2, 1))
    img.putpalette([12, 34, 56, 200, 100, 0])
    img.putpixel((1, 0), 1)
    assert decode_image(_encode(img)).tolist() == [[[12, 34, 56], [200, 100, 0]]]


def test_grayscale_and_rgb_colour_key_transparency_composited_on_white() -> None:
    """PNG tRNS on grayscale and RGB images marks one value fully transparent: it becomes white."""
    gray = Image.fromarray(np.array([[7, 100]], np.uint8))
    assert decode_image(_encode(gray, transparency=7)).tolist() == [[[255, 255, 255], [100, 100, 100]]]
    rgb = Image.fromarray(np.array([[[1, 2, 3], [9, 8, 7]]], np.uint8))
    assert decode_image(_encode(rgb, transparency=(1, 2, 3))).tolist() == [[[255, 255, 255], [9, 8, 7]]]


def test_la_composited_on_white() -> None:
    """Grayscale + alpha: transparent → white, opaque → gray, half → blend."""
    arr = np.array([[[50, 0], [50, 255], [50, 128]]], dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(arr, "LA")))
    a = 128 / 255
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [50, 50, 50]
    assert np.abs(out[0, 2].astype(int) - (50 * a + 255 * (1 - a))).max() <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converted_to_rgb(fmt: str) -> None:
    """CMYK cyan-free magenta+yellow (0, 255, 255, 0) is red in RGB."""
    out = decode_image(_encode(Image.new("CMYK", (3, 2), (0, 255, 255, 0)), fmt))
    assert out.shape == (2, 3, 3)
    assert np.abs(out.astype(int) - np.array([255, 0, 0])).max() <= 2


def test_grayscale_l_and_bilevel() -> None:
    """'L' repeats the gray into three channels; '1' maps to 0 and 255."""
    gray = _rng(1).integers(0, 256, (5, 7), dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(gray)))
    assert out.shape == (5, 7, 3)
    assert all(np.array_equal(out[..., k], gray) for k in range(3))
    bits = Image.new("1", (3, 2))
    bits.putpixel((1, 0), 1)
    bits.putpixel((2, 1), 1)
    out = decode_image(_encode(bits))
    assert out[..., 0].tolist() == [[0, 255, 0], [0, 0, 255]]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_truncated_png_is_corrupt() -> None:
    """A PNG cut in the middle of its pixel data is 'corrupt_image'."""
    data = _encode(Image.fromarray(_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.code == "corrupt_image"


@pytest.mark.parametrize("data", [b"hello, this is not an image at all\n", bytes(_rng(3).integers(0, 256, 512, dtype=np.uint8)), b""])
def test_non_images_are_unsupported_media_type(data: bytes) -> None:
    """Text, random bytes and empty uploads are 'unsupported_media_type'."""
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert info.value.code == "unsupported_media_type"


def test_too_many_pixels() -> None:
    """width × height above max_pixels is 'too_many_pixels', at the limit is fine."""
    data = _encode(Image.new("RGB", (10, 10)))
    assert decode_image(data, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=99)
    assert info.value.code == "too_many_pixels"
    assert "100" in info.value.message


def test_pixel_limit_checked_before_pixel_decoding() -> None:
    """A header that declares too many pixels is refused even if the pixel data is missing (not 'corrupt_image')."""
    data = _encode(Image.fromarray(_rng(4).integers(0, 256, (300, 300, 3), dtype=np.uint8)))
    header_only = data[:200]
    with pytest.raises(ImageDecodeError) as corrupt:
        decode_image(header_only)
    assert corrupt.value.code == "corrupt_image"
    with pytest.raises(ImageDecodeError) as info:
        decode_image(header_only, max_pixels=1000)
    assert info.value.code == "too_many_pixels"


def test_to_tensor_normalises() -> None:
    """(x / 255 − mean) / std, channels first, batch of one."""
    rgb = np.array([[[0, 51, 255], [255, 102, 0]]], dtype=np.uint8)
    t = to_tensor(rgb, (0.5, 0.2, 0.0), (0.5, 0.1, 1.0))
    assert t.shape == (1, 3, 1, 2) and t.dtype == torch.float32
    expected = [[[-1.0, 1.0]], [[0.0, 2.0]], [[1.0, 0.0]]]
    assert torch.allclose(t[0], torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize(("h", "w", "stride"), [(33, 97, 8), (20, 40, 32), (5, 6, 4), (64, 96, 32)])
def test_pad_reflects_to_multiples_of_stride_and_crop_inverts(h: int, w: int, stride: int) -> None:
    """Normal sizes are reflect-padded (as numpy's 'reflect') to multiples of stride; crop gives back the input."""
    x = torch.from_numpy(_rng(h + w).standard_normal((1, 3, h, w)).astype(np.float32))
    padded, size = pad_to_stride(x, stride)
    assert size == (h, w)
    assert padded.shape[-2] % stride == 0 and padded.shape[-1] % stride == 0
    assert padded.shape[-2] - h < stride and padded.shape[-1] - w < stride
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (0, padded.shape[-2] - h), (0, padded.shape[-1] - w)), mode="reflect")
    assert np.array_equal(padded.numpy(), ref)
    assert torch.equal(crop(padded, size), x)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 9), (3, 20)])
def test_tiny_images_are_edge_replicated(h: int, w: int) -> None:
    """Images smaller than the pad are edge-replicated (reflect is impossible) and crop inverts."""
    x = torch.from_numpy(_rng(7).standard_normal((1, 3, h, w)).astype(np.float32))
    padded, size = pad_to_stride(x, 8)
    assert padded.shape[-2:] == (8, 24 if w == 20 else 8 * -(-w // 8))
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (0, padded.shape[-2] - h), (0, padded.shape[-1] - w)), mode="edge")
    assert np.array_equal(padded.numpy(), ref)
    assert torch.equal(crop(padded, size), x)


def test_crop_applies_to_maps_with_fewer_dims() -> None:
    """crop trims the last two dims of a (H, W) map and a (C, H, W) stack alike."""
    full = torch.arange(8 * 16).view(8, 16)
    assert torch.equal(crop(full, (5, 7)), full[:5, :7])
    assert crop(torch.zeros(3, 8, 16), (5, 7)).shape == (3, 5, 7)


def test_decoding_is_safe_in_parallel_threads() -> None:
    """Many threads decoding at once get exactly the sequential results, and the process-wide warning filters stay untouched."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    files = []
    for k in range(24):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16 + k, 20, 3), dtype=np.uint8)).save(buf, format="PNG")
        files.append(buf.getvalue())
    filters = list(warnings.filters)
    expected = [decode_image(f) for f in files]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decode_image, files * 4))
    assert all(np.array_equal(r, expected[i % len(files)]) for i, r in enumerate(results))
    assert warnings.filters == filters
