"""``analyze``'s choice of ``maps.zarr`` or ``maps.npz``, tiled TIFFs beyond ``--max-pixels``, and what a failure leaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from app.io.bundle import Bundle
from app.io.legend import STRIP_HEIGHT
from app.io.synthetic import make_scene
from app.io.zarr_store import read_map
from app.request import AnalysisRequest
from app.workflows.analyse_folder import analyse_files
from app.workflows.analyzer import Analyzer
from app.workflows.stream_analysis import STREAM_PIXELS
from app.workflows.stream_folder import reduced_rgb, streams

FULL = AnalysisRequest(samples=2, seed=1, resolution="full")
WORKING = AnalysisRequest(samples=2, seed=1, resolution="working")


def _scene(size: int = 160) -> np.ndarray:
    return make_scene("test", 2, size=size).image


def test_auto_streams_full_resolution_beyond_four_megapixels_only() -> None:
    assert not streams("auto", FULL, STREAM_PIXELS)
    assert streams("auto", FULL, STREAM_PIXELS + 1)
    assert not streams("auto", WORKING, 10 * STREAM_PIXELS)
    assert streams("zarr", FULL, 1)
    assert not streams("zarr", WORKING, 1)
    assert not streams("npz", FULL, 10 * STREAM_PIXELS)


def test_zarr_folder_then_npz_folder_replaces_the_store(tiny_bundle: Bundle, tmp_path: Path) -> None:
    """``--format zarr`` writes ``maps.zarr`` (no ``maps.npz``), PNGs of the maps and an ``analysis.json`` describing the
    store; analysing the same input again with ``npz`` leaves ``maps.npz`` alone, not a stale store beside it."""
    photo = tmp_path / "scene.png"
    Image.fromarray(_scene()).save(photo)
    analyzer = Analyzer(tiny_bundle)
    [row] = analyse_files(analyzer, [photo], tmp_path / "out", FULL, store_format="zarr")
    folder = tmp_path / "out" / "scene"
    assert row.status == "ok" and (row.width, row.height) == (160, 160)
    assert (folder / "maps.zarr").is_dir() and not (folder / "maps.npz").exists()
    info = json.loads((folder / "analysis.json").read_text())
    assert info["zarr"]["store"] == "maps.zarr" and info["zarr"]["dtypes"]["entropy"] == "float16"
    assert "npz" not in info
    assert info["maps"]["entropy"]["mean"] == pytest.approx(float(read_map(folder / "maps.zarr", "entropy").astype(np.float64).mean()), rel=2e-3)
    with Image.open(folder / "entropy.png") as png:  # the preview at the top left, its colour bar below
        assert png.size[0] >= 160 and png.size[1] == 160 + STRIP_HEIGHT
    ome = json.loads((folder / "maps.zarr" / "entropy" / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["version"] == "0.5" and [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["0"]
    assert zarr.open_array(str(folder / "maps.zarr" / "entropy" / "0"), mode="r").shape == (160, 160)
    assert not list((tmp_path / "out").glob(".*"))
    [again] = analyse_files(analyzer, [photo], tmp_path / "out", FULL, store_format="npz")
    assert again.status == "ok"
    assert (folder / "maps.npz").is_file() and not (folder / "maps.zarr").exists()


def test_a_tiled_tiff_beyond_max_pixels_is_read_tile_by_tile(tiny_bundle: Bundle, tmp_path: Path) -> None:
    """Beyond the decode-whole limit a tiled TIFF is still analysed: streamed at full resolution, reduced to the working
    size otherwise; a striped one of the same size fails with the decoder's message."""
    rgb = _scene(200)
    tiled, striped = tmp_path / "tiled.tif", tmp_path / "striped.tif"
    tifffile.imwrite(tiled, rgb, tile=(32, 32), photometric="rgb", compression="zlib")
    tifffile.imwrite(striped, rgb, photometric="rgb")
    analyzer = Analyzer(tiny_bundle, max_pixels=100 * 100)
    full = list(analyse_files(analyzer, [tiled, striped], tmp_path / "full", FULL))
    assert [r.status for r in full] == ["ok", "failed"]
    assert (tmp_path / "full" / "tiled" / "maps.zarr").is_dir()
    assert "pixels" in full[1].error
    tiny_bundle.card.input.working_size = 64
    [working] = analyse_files(analyzer, [tiled], tmp_path / "working", WORKING)
    assert working.status == "ok" and working.resolution == "working"
    assert (working.input_width, working.input_height, working.width, working.height) == (200, 200, 64, 64)
    assert (tmp_path / "working" / "tiled" / "maps.npz").is_file()


def test_a_truncated_tiled_tiff_fails_and_leaves_no_folder(tiny_bundle: Bundle, tmp_path: Path) -> None:
    rgb = _scene(200)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, rgb, tile=(32, 32), photometric="rgb", compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    analyzer = Analyzer(tiny_bundle, max_pixels=100 * 100)
    [row] = analyse_files(analyzer, [path], tmp_path / "out", FULL)
    assert row.status == "failed" and row.error
    assert list((tmp_path / "out").iterdir()) == []


def test_reduced_rgb_is_the_block_mean_then_resize() -> None:
    """An exact integer factor is a block mean (rounded); the result has the asked shape."""

    class Reader:
        height, width = 64, 96
        rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3)).astype(np.uint8)

        def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
            return self.rgb[top : top + rows, left : left + cols]

    reader = Reader()
    out = reduced_rgb(reader, (16, 24))
    want = np.rint(reader.rgb.astype(np.float64).reshape(16, 4, 24, 4, 3).mean(axis=(1, 3)))
    np.testing.assert_array_equal(out, want.astype(np.uint8))
    assert reduced_rgb(reader, (20, 30)).shape == (20, 30, 3)
