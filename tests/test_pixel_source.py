"""Tests for app.io.pixel_source: region reads, sample conversions, refusals and damaged files, tile-wise decoding."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from app.io.pixel_source import ArraySource, TiledImageError, is_tiled_tiff, open_tiled_tiff

REGIONS = [(0, 0, 16, 16), (10, 5, 30, 40), (31, 31, 2, 2), (0, 0, 100, 90), (84, 70, 16, 20), (99, 89, 1, 1), (40, 0, 7, 90)]
BIG = 10**8


def _rgb(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, shape, dtype=dtype)


def _straight_on_white(colour: np.ndarray, alpha: np.ndarray, top: int) -> np.ndarray:
    """Reference compositing in exact integer arithmetic: round(c*255/top * a/top + 255*(1 - a/top)), no ties."""
    num = colour.astype(np.int64) * 255 * alpha[..., None] + 255 * top * (top - alpha[..., None].astype(np.int64))
    den = top * top
    return ((2 * num + den) // (2 * den)).astype(np.uint8)


@pytest.mark.parametrize(("bigtiff", "compression", "tile"), [(False, "zlib", (16, 16)), (True, None, (32, 32)), (True, "zlib", (32, 16))])
def test_regions_equal_slices(tmp_path: Path, bigtiff: bool, compression: str | None, tile: tuple[int, int]) -> None:
    image = _rgb((100, 90, 3))
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, image, tile=tile, photometric="rgb", compression=compression, bigtiff=bigtiff)
    assert is_tiled_tiff(path)
    with open_tiled_tiff(path, BIG) as source:
        assert (source.height, source.width) == (100, 90)
        for top, left, rows, cols in REGIONS:
            region = source.read(top, left, rows, cols)
            assert region.dtype == np.uint8 and region.shape == (rows, cols, 3)
            np.testing.assert_array_equal(region, image[top : top + rows, left : left + cols])


def test_separate_planes(tmp_path: Path) -> None:
    image = _rgb((100, 90, 3), seed=1)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(image, 2, 0).copy(), tile=(16, 16), photometric="rgb", planarconfig="separate", compression="zlib")
    with open_tiled_tiff(path, BIG) as source:
        assert (source.height, source.width) == (100, 90)
        for top, left, rows, cols in REGIONS:
            np.testing.assert_array_equal(source.read(top, left, rows, cols), image[top : top + rows, left : left + cols])


def test_grayscale_repeated(tmp_path: Path) -> None:
    gray = _rgb((50, 40), seed=2)
    tifffile.imwrite(tmp_path / "g.tif", gray, tile=(16, 16), photometric="minisblack")
    with open_tiled_tiff(tmp_path / "g.tif", BIG) as source:
        region = source.read(3, 5, 30, 20)
    expected = np.stack([gray[3:33, 5:25]] * 3, axis=-1)
    np.testing.assert_array_equal(region, expected)


def test_uint16_scaled(tmp_path: Path) -> None:
    image = _rgb((40, 40, 3), seed=3, dtype=np.uint16)
    image[0, :4, 0] = [0, 128, 129, 65535]  # 128/257 rounds to 0, 129/257 to 1
    tifffile.imwrite(tmp_path / "w.tif", image, tile=(16, 16), photometric="rgb", compression="zlib")
    with open_tiled_tiff(tmp_path / "w.tif", BIG) as source:
        region = source.read(0, 0, 40, 40)
    expected = np.floor(image.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(region, expected)
    assert list(region[0, :4, 0]) == [0, 0, 1, 255]


def test_gray_alpha_on_white(tmp_path: Path) -> None:
    pixels = _rgb((40, 40, 2), seed=4)
    pixels[0, 0] = [0, 0]  # fully transparent black -> white
    tifffile.imwrite(tmp_path / "ga.tif", pixels, tile=(16, 16), photometric="minisblack", extrasamples=["unassalpha"])
    with open_tiled_tiff(tmp_path / "ga.tif", BIG) as source:
        region = source.read(0, 0, 40, 40)
    gray = _straight_on_white(pixels[..., :1], pixels[..., 1], 255)
    np.testing.assert_array_equal(region, np.repeat(gray, 3, axis=-1))
    assert list(region[0, 0]) == [255, 255, 255]


def test_rgba_on_white(tmp_path: Path) -> None:
    pixels = _rgb((40, 40, 4), seed=5)
    pixels[0, 0], pixels[0, 1] = [10, 20, 30, 255], [10, 20, 30, 0]
    tifffile.imwrite(tmp_path / "rgba.tif", pixels, tile=(16, 16), photometric="rgb", compression="zlib")
    with open_tiled_tiff(tmp_path / "rgba.tif", BIG) as source:
        region = source.read(0, 0, 40, 40)
    np.testing.assert_array_equal(region, _straight_on_white(pixels[..., :3], pixels[..., 3], 255))
    assert list(region[0, 0]) == [10, 20, 30] and list(region[0, 1]) == [255, 255, 255]


def test_rgba_uint16_on_white(tmp_path: Path) -> None:
    pixels = _rgb((32, 32, 4), seed=6, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgba16.tif", pixels, tile=(16, 16), photometric="rgb")
    with open_tiled_tiff(tmp_path / "rgba16.tif", BIG) as source:
        region = source.read(0, 0, 32, 32)
    expected = _straight_on_white(pixels[..., :3], pixels[..., 3], 65535)
    difference = np.abs(region.astype(int) - expected)
    assert difference.max() <= 1 and np.mean(difference == 0) > 0.99  # float32 may round within ~1e-5 of a half otherwise


def test_premultiplied_alpha(tmp_path: Path) -> None:
    alpha = _rgb((32, 32), seed=7)
    straight = _rgb((32, 32, 3), seed=8)
    premultiplied = (straight.astype(np.int64) * alpha[..., None] + 127) // 255
    pixels = np.concatenate([premultiplied, alpha[..., None]], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "pm.tif", pixels, tile=(16, 16), photometric="rgb", extrasamples=["assocalpha"])
    with open_tiled_tiff(tmp_path / "pm.tif", BIG) as source:
        region = source.read(0, 0, 32, 32)
    expected = (2 * (premultiplied + 255 - alpha[..., None].astype(np.int64)) + 1) // 2  # c + 255 * (1 - a), integers
    np.testing.assert_array_equal(region, expected.astype(np.uint8))


def test_array_source() -> None:
    image = _rgb((20, 30, 3), seed=9)
    source = ArraySource(image)
    assert (source.height, source.width) == (20, 30)
    np.testing.assert_array_equal(source.read(5, 7, 10, 23), image[5:15, 7:30])
    assert np.shares_memory(source.read(0, 0, 2, 2), image)
    for region in [(15, 0, 6, 5), (0, 25, 5, 6), (-1, 0, 2, 2), (0, 0, 0, 5)]:
        with pytest.raises(ValueError, match="not inside"):
            source.read(*region)
    with pytest.raises(ValueError, match="uint8"):
        ArraySource(image.astype(np.float32))


def test_out_of_image_read_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", _rgb((40, 40, 3)), tile=(16, 16), photometric="rgb")
    with open_tiled_tiff(tmp_path / "t.tif", BIG) as source, pytest.raises(ValueError, match="not inside"):
        source.read(30, 30, 11, 5)


def test_striped_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", _rgb((40, 40, 3)), photometric="rgb")
    assert not is_tiled_tiff(tmp_path / "s.tif")
    with pytest.raises(TiledImageError, match="striped TIFF: it must be decoded whole") as caught:
        open_tiled_tiff(tmp_path / "s.tif", BIG)
    assert "s.tif" in caught.value.message


def test_is_tiled_tiff_other_files(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    garbage = tmp_path / "g.tif"
    garbage.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(200))
    for path in [png, garbage, tmp_path / "missing.tif", tmp_path]:
        assert not is_tiled_tiff(path)
        with pytest.raises(TiledImageError, match="not a readable TIFF"):
            open_tiled_tiff(path, BIG)


def test_several_planes_and_unsupported_samples(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "z.tif", _rgb((2, 32, 32, 3)), tile=(16, 16), photometric="rgb")
    with pytest.raises(TiledImageError, match="several images or planes"):
        open_tiled_tiff(tmp_path / "z.tif", BIG)
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((32, 32), np.float32), tile=(16, 16))
    with pytest.raises(TiledImageError, match="float32"):
        open_tiled_tiff(tmp_path / "f.tif", BIG)
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((32, 32), np.uint8), tile=(16, 16), photometric="palette", colormap=np.zeros((3, 256), np.uint16))
    with pytest.raises(TiledImageError, match="PALETTE"):
        open_tiled_tiff(tmp_path / "p.tif", BIG)


def test_too_many_pixels(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", _rgb((48, 64, 3)), tile=(16, 16), photometric="rgb")
    with pytest.raises(TiledImageError, match=r"3,072 pixels .*more than the 3,071 allowed") as caught:
        open_tiled_tiff(tmp_path / "t.tif", 3071)
    assert "3,071" in caught.value.message
    with open_tiled_tiff(tmp_path / "t.tif", 3072) as source:
        assert source.width == 64


def _tiles(path: Path) -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        return path.read_bytes(), tuple(page.dataoffsets), tuple(page.databytecounts)


@pytest.mark.parametrize("compression", ["zlib", None])
def test_truncated_file(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, _rgb((64, 64, 3)), tile=(16, 16), photometric="rgb", compression=compression)
    data, offsets, counts = _tiles(path)
    path.write_bytes(data[: offsets[9] + counts[9] // 2])  # tile 9 is row 2, column 1 of 4x4 tiles
    with pytest.raises(TiledImageError, match="truncated: the tile at rows 32-47, columns 16-31") as caught:
        open_tiled_tiff(path, BIG)
    assert "file has" in caught.value.message


def test_garbage_tile(tmp_path: Path) -> None:
    image = _rgb((64, 64, 3))
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, image, tile=(16, 16), photometric="rgb", compression="zlib")
    data, offsets, counts = _tiles(path)
    damaged = bytearray(data)
    damaged[offsets[5] : offsets[5] + counts[5]] = np.random.default_rng(1).bytes(counts[5])  # rows 16-31, columns 16-31
    path.write_bytes(bytes(damaged))
    with open_tiled_tiff(path, BIG) as source:
        np.testing.assert_array_equal(source.read(0, 0, 16, 64), image[:16])
        np.testing.assert_array_equal(source.read(32, 0, 32, 64), image[32:])
        with pytest.raises(TiledImageError, match="damaged: the tiles of rows 10-29, columns 20-24 cannot be decoded") as caught:
            source.read(10, 20, 20, 5)
    assert "t.tif" in caught.value.message


def test_missing_tile(tmp_path: Path) -> None:
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, _rgb((32, 32, 3)), tile=(16, 16), photometric="rgb")
    data, _, counts = _tiles(path)
    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages.first.tags["TileByteCounts"]
        size = {3: 2, 4: 4, 16: 8}[int(tag.dtype)]  # SHORT, LONG or LONG8 values, stored out of line
        where = tag.valueoffset + 3 * size  # the fourth tile's byte count
    damaged = bytearray(data)
    damaged[where : where + size] = bytes(size)
    path.write_bytes(bytes(damaged))
    with pytest.raises(TiledImageError, match="1 of its 4 tiles is missing, the first bad one at rows 16-31, columns 16-31"):
        open_tiled_tiff(path, BIG)
    assert counts[3] > 0


def test_close_and_context_manager(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", _rgb((32, 32, 3)), tile=(16, 16), photometric="rgb")
    source = open_tiled_tiff(tmp_path / "t.tif", BIG)
    source.close()
    with pytest.raises(ValueError, match="closed"):
        source.read(0, 0, 4, 4)


def test_small_read_decodes_few_tiles(tmp_path: Path) -> None:
    image = np.zeros((4096, 4096, 3), np.uint8)
    image[::7] = _rgb((4096, 3))  # compresses quickly, still ~48 MB raw
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(32, 32), photometric="rgb", compression="zlib")
    with open_tiled_tiff(path, BIG) as source:
        source.read(0, 0, 8, 8)  # zarr's one-off set-up is not what is measured
        tracemalloc.start()
        try:
            region = source.read(2000, 3000, 64, 64)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(region, image[2000:2064, 3000:3064])
    assert peak < 2_000_000


def test_min_is_white_inverted(tmp_path: Path) -> None:
    gray = _rgb((32, 32), seed=10)
    tifffile.imwrite(tmp_path / "mw.tif", gray, tile=(16, 16), photometric="miniswhite")
    with open_tiled_tiff(tmp_path / "mw.tif", BIG) as source:
        region = source.read(0, 0, 32, 32)
    np.testing.assert_array_equal(region, np.stack([255 - gray] * 3, axis=-1))
