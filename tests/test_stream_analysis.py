"""Full-resolution analyses streamed to ``maps.zarr``: the same maps, means, class rows and errors as in memory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile

from app.io.bundle import Bundle
from app.io.npz import FLOAT32_MAPS
from app.io.synthetic import make_scene
from app.io.zarr_store import read_map
from app.maps.regions import Region
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.stream_analysis import analyze_to_store

SAMPLES, SEED = 4, 3
HEIGHT, WIDTH = 200, 232
REQUEST = AnalysisRequest(samples=SAMPLES, seed=SEED, resolution="full")


def _scene() -> np.ndarray:
    """A seeded 200×232 scene: not a multiple of the stride, so the last tiles and bands reach into the padding."""
    return make_scene("test", 1, size=WIDTH).image[:HEIGHT]


def _tiled_analyzer(bundle: Bundle) -> Analyzer:
    analyzer = Analyzer(bundle)
    analyzer.memory_budget = int(analyzer.cost.image_bytes(HEIGHT, WIDTH) / 3)
    grid = analyzer.tile_grid(HEIGHT, WIDTH)
    assert grid is not None and len(grid.tops) > 1 and len(grid.lefts) > 1
    return analyzer


class _Reader:
    """A region reader over an array that counts the pixels it was asked for."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.read_pixels = 0

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
        assert top >= 0 and top + rows <= self.height and left >= 0 and left + cols <= self.width
        self.read_pixels += rows * cols
        return self.rgb[top : top + rows, left : left + cols]


def test_streamed_store_equals_the_in_memory_analysis(tiny_bundle: Bundle, tmp_path) -> None:
    """Every map of the store is the in-memory map in its stored dtype (float16: within half a unit in the last place,
    ``2⁻¹¹`` relative), the labels are equal, and the means, class and component rows and MC errors are the in-memory ones."""
    analyzer = _tiled_analyzer(tiny_bundle)
    rgb = _scene()
    memory = analyzer.analyze_image(rgb, REQUEST)
    streamed = analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "maps.zarr", preview_side=64)
    store = tmp_path / "maps.zarr"
    np.testing.assert_array_equal(read_map(store, "prediction"), memory.prediction)
    for name in MAP_NAMES:
        stored = read_map(store, name)
        assert stored.shape == (HEIGHT, WIDTH)
        assert stored.dtype == (np.float32 if name in FLOAT32_MAPS else np.float16)
        np.testing.assert_allclose(stored.astype(np.float64), memory.maps[name], rtol=2**-11, atol=2**-25, err_msg=name)
        assert streamed.map_mean(name) == pytest.approx(memory.map_mean(name), rel=1e-9, abs=1e-12)
    assert streamed.analysed_size == memory.analysed_size
    assert streamed.mean_errors == pytest.approx(memory.mean_errors)
    assert streamed.error_method == memory.error_method == "tile_bound"

    def key(r: Region) -> tuple[object, ...]:
        return (r.kind, r.class_index, r.component, r.pixels, r.bbox)

    assert [key(r) for r in streamed.regions] == [key(r) for r in memory.regions]
    assert any(r.kind == "component" for r in streamed.regions)
    for got, want in zip(streamed.regions, memory.regions, strict=True):
        assert got.means == pytest.approx(want.means, rel=1e-6, abs=1e-9)
    assert [streamed.class_share(i) for i in range(3)] == pytest.approx([memory.class_share(i) for i in range(3)])


def test_previews_are_block_means_of_the_full_maps(tiny_bundle: Bundle, tmp_path) -> None:
    """The previews (the analysis's maps and the stores' level 1) are ``f×f`` block means, ``f = ⌈232 / 64⌉ = 4``."""
    analyzer = _tiled_analyzer(tiny_bundle)
    streamed = analyze_to_store(analyzer, _scene(), REQUEST, tmp_path / "maps.zarr", preview_side=64)
    memory = analyzer.analyze_image(_scene(), REQUEST)
    f = 4
    assert streamed.stored is not None and streamed.stored.factor == f
    shape = (math.ceil(HEIGHT / f), math.ceil(WIDTH / f))
    full = memory.maps["entropy"].astype(np.float64)
    padded = np.full((shape[0] * f, shape[1] * f), np.nan)
    padded[:HEIGHT, :WIDTH] = full
    want = np.nanmean(padded.reshape(shape[0], f, shape[1], f), axis=(1, 3))
    assert streamed.maps["entropy"].shape == shape
    np.testing.assert_allclose(streamed.maps["entropy"], want, rtol=1e-5, atol=1e-6)
    level1 = read_map(tmp_path / "maps.zarr", "entropy", level=1)
    assert level1.dtype == np.float16
    np.testing.assert_allclose(level1.astype(np.float64), streamed.maps["entropy"], rtol=2**-11, atol=2**-25)
    np.testing.assert_array_equal(read_map(tmp_path / "maps.zarr", "prediction", level=1), streamed.prediction)


def test_a_preview_level_is_stored_only_from_a_factor_of_three(tiny_bundle: Bundle, tmp_path) -> None:
    """At ``f = 2`` the level would add a quarter to the store: the previews are in memory (for PNGs) but not stored."""
    import zarr

    analyzer = _tiled_analyzer(tiny_bundle)
    streamed = analyze_to_store(analyzer, _scene(), REQUEST, tmp_path / "maps.zarr", preview_side=116)
    assert streamed.stored is not None and streamed.stored.factor == 2
    assert streamed.maps["entropy"].shape == (100, 116)
    entropy = zarr.open_group(str(tmp_path / "maps.zarr" / "entropy"), mode="r")
    assert list(entropy.array_keys()) == ["0"]
    ome = json.loads((tmp_path / "maps.zarr" / "entropy" / "zarr.json").read_text())["attributes"]["ome"]
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["0"]


def test_a_region_reader_gives_the_arrays_store_reading_each_tile_once(tiny_bundle: Bundle, tmp_path) -> None:
    """A reader is asked for regions only (the windows, then blocks for the input's preview) and the store equals the array's."""
    analyzer = _tiled_analyzer(tiny_bundle)
    rgb = _scene()
    reader = _Reader(rgb)
    analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "a.zarr")
    analyze_to_store(analyzer, reader, REQUEST, tmp_path / "b.zarr")
    grid = analyzer.tile_grid(HEIGHT, WIDTH)
    assert grid is not None
    assert reader.read_pixels <= len(grid.tops) * len(grid.lefts) * grid.tile[0] * grid.tile[1] + HEIGHT * WIDTH
    for name in ("prediction", *MAP_NAMES):
        np.testing.assert_array_equal(read_map(tmp_path / "a.zarr", name), read_map(tmp_path / "b.zarr", name))


def test_a_tiled_tiff_streams_to_the_same_store(tiny_bundle: Bundle, tmp_path) -> None:
    """A tiled TIFF read tile by tile gives the store of the decoded array."""
    from app.io.pixel_source import open_tiled_tiff

    analyzer = _tiled_analyzer(tiny_bundle)
    rgb = _scene()
    path = tmp_path / "scene.tif"
    tifffile.imwrite(path, rgb, tile=(32, 32), photometric="rgb", compression="zlib")
    analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "a.zarr")
    with open_tiled_tiff(path, 10**9) as source:
        analyze_to_store(analyzer, source, REQUEST, tmp_path / "b.zarr")
    for name in ("prediction", *MAP_NAMES):
        np.testing.assert_array_equal(read_map(tmp_path / "a.zarr", name), read_map(tmp_path / "b.zarr", name))


def test_an_unfinished_store_is_not_read_as_complete(tiny_bundle: Bundle, tmp_path) -> None:
    """A store whose analysis stopped (here: a reader failing mid-image) has no ``complete`` mark and is refused."""
    analyzer = _tiled_analyzer(tiny_bundle)

    class Failing(_Reader):
        def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
            if top > 0:
                raise OSError("tile unreadable")
            return super().read(top, left, rows, cols)

    with pytest.raises(OSError, match="tile unreadable"):
        analyze_to_store(analyzer, Failing(_scene()), REQUEST, tmp_path / "maps.zarr")
    with pytest.raises(ValueError, match="not a complete analysis store"):
        read_map(tmp_path / "maps.zarr", "entropy")


def test_class_arrays_are_stored_only_when_asked(tiny_bundle: Bundle, tmp_path) -> None:
    """``save=("mean_probs",)`` stores that ``(C, H, W)`` array, equal to the in-memory one; without it none is stored."""
    import zarr

    analyzer = _tiled_analyzer(tiny_bundle)
    rgb = _scene()
    memory = analyzer.analyze_image(rgb, REQUEST)
    analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "kept.zarr", save=("mean_probs",))
    analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "none.zarr")
    np.testing.assert_allclose(read_map(tmp_path / "kept.zarr", "mean_probs"), memory.mean_probs, rtol=1e-6, atol=1e-7)
    assert "mean_probs" not in zarr.open_group(str(tmp_path / "none.zarr"), mode="r")
    assert "probs" not in zarr.open_group(str(tmp_path / "kept.zarr"), mode="r")


def test_column_strips_give_the_same_store_and_summary(tiny_bundle: Bundle, tmp_path) -> None:
    """A 96×1600 image in strips of 512 columns (three, boundaries at 512 and 1024) equals the one-strip analysis bit for
    bit (every pixel blended from the same tiles in the same order), with the same means, class rows and previews."""
    rgb = np.concatenate([make_scene("test", k, size=400).image[:96] for k in range(4)], axis=1)
    analyzer = Analyzer(tiny_bundle)
    analyzer.memory_budget = int(analyzer.cost.image_bytes(96, 1600) / 6)
    whole = analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "whole.zarr", ("mean_probs",), preview_side=400, strip_columns=None)
    striped = analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "strips.zarr", ("mean_probs",), preview_side=400, strip_columns=512)
    for name in ("prediction", *MAP_NAMES):
        np.testing.assert_array_equal(read_map(tmp_path / "strips.zarr", name), read_map(tmp_path / "whole.zarr", name))
    assert whole.stored is not None and striped.stored is not None
    for name, value in whole.stored.means.items():
        assert striped.stored.means[name] == pytest.approx(value, rel=1e-12)
    assert [(r.class_index, r.pixels, r.bbox) for r in striped.regions] == [(r.class_index, r.pixels, r.bbox) for r in whole.regions]
    np.testing.assert_array_equal(striped.prediction, whole.prediction)
    for name in MAP_NAMES:
        np.testing.assert_allclose(striped.maps[name], whole.maps[name], rtol=1e-6)


def test_a_streamed_analysis_has_the_in_memory_sets_counted_at_full_resolution(tiny_bundle: Bundle, tmp_path) -> None:
    """Set sizes in the store equal the in-memory analysis's; the shares of one-class sets, the mean sizes and each class
    row's sure share are counted at full resolution (the previews are 2x smaller)."""
    from test_prediction_sets import THRESHOLDS, _card_sets

    from app.io.zarr_store import StoreArrays
    from app.maps.registry import set_size_name

    tiny_bundle.card.conformal_sets = _card_sets(samples=SAMPLES)
    analyzer = _tiled_analyzer(tiny_bundle)
    rgb = _scene()
    memory = analyzer.analyze_image(rgb, REQUEST)
    streamed = analyze_to_store(analyzer, rgb, REQUEST, tmp_path / "maps.zarr", preview_side=WIDTH // 2)
    assert memory.sets is not None and streamed.sets is not None and streamed.stored is not None and streamed.stored.factor == 2
    arrays = StoreArrays(tmp_path / "maps.zarr")
    for alpha in THRESHOLDS:
        np.testing.assert_array_equal(arrays[set_size_name(alpha)], memory.sets.sizes[alpha])
        assert streamed.sets.sizes[alpha].shape == streamed.prediction.shape
    for got, want in zip(streamed.sets.summaries(), memory.sets.summaries(), strict=True):
        assert got["singleton_share"] == pytest.approx(want["singleton_share"], rel=1e-12)
        assert got["mean_set_size"] == pytest.approx(want["mean_set_size"], rel=1e-12)
    assert [(r.kind, r.class_index, r.component) for r in streamed.regions] == [(r.kind, r.class_index, r.component) for r in memory.regions]
    for row, expected in zip(streamed.regions, memory.regions, strict=True):
        assert row.sure_share == pytest.approx(expected.sure_share, rel=1e-12)
        assert set(row.means) == set(MAP_NAMES)


def test_a_readers_input_preview_is_read_in_blocks_and_equals_the_whole_images() -> None:
    """The input's preview from a reader is the ``f × f`` box average of the whole image, read in blocks no wider than
    :data:`PREVIEW_BLOCK` columns (a row as wide as a slide would cost memory in its width)."""
    from PIL import Image

    from app.workflows.stream_analysis import PREVIEW_BLOCK, _preview_image

    rgb = np.random.default_rng(0).integers(0, 256, (700, 1300, 3), dtype=np.uint8)
    widths: list[int] = []

    class Recording(_Reader):
        def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
            widths.append(cols)
            return super().read(top, left, rows, cols)

    factor = 3
    shape = (-(-700 // factor), -(-1300 // factor))
    expected = np.asarray(Image.fromarray(rgb).reduce(factor))
    np.testing.assert_array_equal(_preview_image(Recording(rgb), shape, factor), expected)
    assert max(widths) <= PREVIEW_BLOCK


def test_a_band_is_finalised_one_block_at_a_time(tiny_bundle: Bundle, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most one block's finalised maps (all ``C×H×W`` arrays of a tile-wide block) exist at once, whatever the band's width."""
    import weakref

    import app.engine.sliding_window as sliding_window

    finalize = sliding_window.finalize_blend
    alive: set[int] = set()
    most = [0]
    made = [0]

    def tracked(*args: object, **kwargs: object) -> object:
        maps = finalize(*args, **kwargs)  # type: ignore[arg-type]
        made[0] += 1
        key = made[0]
        alive.add(key)
        most[0] = max(most[0], len(alive))
        weakref.finalize(maps.probs, alive.discard, key)
        return maps

    monkeypatch.setattr(sliding_window, "finalize_blend", tracked)
    analyzer = _tiled_analyzer(tiny_bundle)
    analyze_to_store(analyzer, _scene(), REQUEST, tmp_path / "maps.zarr")
    grid = analyzer.tile_grid(HEIGHT, WIDTH)
    assert grid is not None
    assert made[0] == len(grid.tops) * math.ceil(WIDTH / grid.tile[1]) and made[0] > len(grid.tops)
    assert most[0] == 1


def test_band_labels_and_their_preview_are_held_in_the_smallest_label_dtype(tiny_bundle: Bundle, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each band's labels reach the store, the summary and the components as ``uint8`` (not the argmax's ``int64``, eight
    times the bytes a band row holds), and the prediction preview the summary keeps for the whole image is ``uint8`` too."""
    import app.workflows.stream_analysis as stream_analysis
    from app.maps.strip_summary import StripedSummary

    seen: list[np.dtype] = []
    write_band = stream_analysis.MapStore.write_band

    def spy(self: object, top: int, arrays: dict[str, np.ndarray], left: int = 0) -> None:
        seen.append(arrays["prediction"].dtype)
        write_band(self, top, arrays, left)  # type: ignore[arg-type]

    previews: list[np.ndarray] = []
    own = StripedSummary.previews

    def kept(self: StripedSummary) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        result = own(self)
        previews.append(result[0])
        return result

    monkeypatch.setattr(stream_analysis.MapStore, "write_band", spy)
    monkeypatch.setattr(StripedSummary, "previews", kept)
    analysis = analyze_to_store(_tiled_analyzer(tiny_bundle), _scene(), REQUEST, tmp_path / "maps.zarr")
    assert seen and all(d == np.uint8 for d in seen)
    assert previews[0].dtype == np.uint8
    np.testing.assert_array_equal(previews[0], analysis.prediction)
