"""The streamed band summary against the whole-array results: image means, region_table's class rows, and previews
against an independent pad-and-reshape block mean and a brute-force block mode."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from app.maps import band_summary
from app.maps.band_summary import BandSummary
from app.maps.regions import Region, region_table

H, W = 37, 53
NAMES = ["background", "person", "car", "tree"]
MAPS = ["confidence", "entropy", "mutual_information"]


def scene(seed: int = 0, dtype: type = np.float32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels from {0, 1, 3} (class 2 absent) in blobs plus noise, and maps of random floats with different offsets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    pred = np.where(xx < 20, 0, np.where(yy < 15, 1, 3)).astype(np.uint8)
    noise = rng.random((H, W)) < 0.2
    pred[noise] = rng.choice(np.array([0, 1, 3], dtype=np.uint8), size=int(noise.sum()))
    maps: dict[str, np.ndarray] = {name: (rng.random((H, W)) * (i + 1) + 10 * i).astype(dtype) for i, name in enumerate(MAPS)}
    return pred, maps


def uneven_bands(seed: int, height: int = H) -> list[tuple[int, int]]:
    """``(top, rows)`` of bands of random heights 1..9 covering ``height`` rows."""
    rng = np.random.default_rng(seed)
    bands, top = [], 0
    while top < height:
        rows = min(int(rng.integers(1, 10)), height - top)
        bands.append((top, rows))
        top += rows
    return bands


def summarise(pred: np.ndarray, maps: dict[str, np.ndarray], bands: list[tuple[int, int]], preview_side: int = 2048) -> BandSummary:
    summary = BandSummary(pred.shape[0], pred.shape[1], NAMES, list(maps), preview_side=preview_side)
    for top, rows in bands:
        summary.add(top, pred[top : top + rows], {name: m[top : top + rows] for name, m in maps.items()})
    return summary


def class_rows(pred: np.ndarray, maps: dict[str, np.ndarray]) -> list[Region]:
    """region_table's class rows, called as the analyzer calls it for an exact (T = 0) analysis."""
    return [r for r in region_table(pred, maps, NAMES, replicates=None, samples=0) if r.kind == "class"]


def assert_same_class_rows(got: list[Region], expected: list[Region]) -> None:
    """Field by field: equal, except means (to 1e-12 relative: the summation order differs) and errors (all None)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        for f in dataclasses.fields(e):
            if f.name not in ("means", "errors"):
                assert getattr(g, f.name) == getattr(e, f.name), f.name
        assert list(g.means) == list(e.means) == list(g.errors)
        assert g.means == pytest.approx(e.means, rel=1e-12, abs=0)
        assert g.errors == dict.fromkeys(e.means)


def block_mean(arr: np.ndarray, f: int) -> np.ndarray:
    """Reference block mean: pad with NaN to multiples of ``f``, reshape, nanmean."""
    h, w = arr.shape
    padded = np.full((math.ceil(h / f) * f, math.ceil(w / f) * f), np.nan)
    padded[:h, :w] = arr
    return np.nanmean(padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f), axis=(1, 3))


def block_mode(pred: np.ndarray, f: int) -> np.ndarray:
    """Reference block mode: count each block's labels one block at a time; ties go to the smaller label."""
    out = np.zeros((math.ceil(pred.shape[0] / f), math.ceil(pred.shape[1] / f)), dtype=pred.dtype)
    for by in range(out.shape[0]):
        for bx in range(out.shape[1]):
            counts = Counter(pred[by * f : (by + 1) * f, bx * f : (bx + 1) * f].ravel().tolist())
            out[by, bx] = min(counts, key=lambda c: (-counts[c], c))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_means_of_uneven_bands_equal_whole_array_means(seed: int) -> None:
    pred, maps = scene(seed)
    means = summarise(pred, maps, uneven_bands(seed)).means()
    assert list(means) == MAPS
    for name, m in maps.items():
        assert means[name] == pytest.approx(m.mean(dtype=np.float64), rel=1e-12, abs=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_class_rows_equal_region_table_class_rows(seed: int) -> None:
    pred, maps = scene(seed)
    got = summarise(pred, maps, uneven_bands(seed)).class_regions()
    assert [r.class_index for r in got] == [0, 1, 3]
    assert_same_class_rows(got, class_rows(pred, maps))


def test_class_rows_name_labels_past_the_names_by_index_and_box_single_pixels() -> None:
    pred = np.zeros((6, 7), dtype=np.int32)
    pred[4, 5] = 6
    pred[1:3, 2] = 1
    maps = {"confidence": np.arange(42, dtype=np.float32).reshape(6, 7)}
    got = summarise(pred, maps, [(0, 4), (4, 2)]).class_regions()
    assert [(r.class_index, r.class_name, r.bbox, r.pixels) for r in got] == [
        (0, "background", [0, 0, 7, 6], 39),
        (1, "person", [2, 1, 3, 3], 2),
        (6, "6", [5, 4, 6, 5], 1),
    ]
    assert_same_class_rows(got, class_rows(pred, maps))


@pytest.mark.parametrize(
    ("preview_side", "factor", "bands"),
    [
        (2048, 1, "uneven"),
        (53, 1, "uneven"),
        (14, 4, "uneven"),  # 37 × 53 is no multiple of 4; bands of 1..9 rows straddle the block-rows
        (14, 4, "aligned"),  # bands of 4 and 8 rows: every band ends a block-row (the last one at the image's end)
        (14, 4, "whole"),
        (6, 9, "uneven"),
    ],
)
def test_previews_equal_reference_block_mean_and_mode(preview_side: int, factor: int, bands: str) -> None:
    pred, maps = scene(3)
    spans = {"uneven": uneven_bands(3), "aligned": [(0, 8), (8, 4), (12, 8), (20, 4), (24, 12), (36, 1)], "whole": [(0, H)]}[bands]
    summary = summarise(pred, maps, spans, preview_side=preview_side)
    assert summary.factor == factor
    labels, previews = summary.previews()
    shape = (math.ceil(H / factor), math.ceil(W / factor))
    assert labels.dtype == pred.dtype and labels.shape == shape
    np.testing.assert_array_equal(labels, block_mode(pred, factor))
    assert list(previews) == MAPS
    for name, m in maps.items():
        assert previews[name].dtype == np.float32 and previews[name].shape == shape
        np.testing.assert_allclose(previews[name], block_mean(m.astype(np.float64), factor), rtol=1e-6)


def test_mode_ties_go_to_the_smaller_class() -> None:
    pred = np.array([[1, 0, 2, 3], [0, 1, 3, 2]], dtype=np.int16)
    summary = summarise(pred, {"confidence": np.zeros((2, 4), dtype=np.float32)}, [(0, 1), (1, 1)], preview_side=2)
    labels, _ = summary.previews()
    np.testing.assert_array_equal(labels, np.array([[0, 2]], dtype=np.int16))


def test_float16_maps_are_summed_in_float64() -> None:
    pred, maps = scene(4, dtype=np.float16)
    summary = summarise(pred, maps, uneven_bands(4), preview_side=14)
    for name, m in maps.items():
        assert summary.means()[name] == pytest.approx(m.mean(dtype=np.float64), rel=1e-12, abs=0)
        np.testing.assert_allclose(summary.previews()[1][name], block_mean(m.astype(np.float64), 4), rtol=1e-6)
    assert_same_class_rows(summary.class_regions(), class_rows(pred, maps))


def test_bands_split_into_small_chunks_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """A band is handled in chunks of rows (bounded temporaries); chunks of one or a few rows change nothing."""
    pred, maps = scene(5)
    monkeypatch.setattr(band_summary, "_CHUNK_PIXELS", 2 * W + 1)
    monkeypatch.setattr(band_summary, "_COUNT_CELLS", 1)
    chunked = summarise(pred, maps, [(0, 17), (17, H - 17)], preview_side=14)
    assert chunked.means() == pytest.approx({name: m.mean(dtype=np.float64) for name, m in maps.items()}, rel=1e-12, abs=0)
    assert_same_class_rows(chunked.class_regions(), class_rows(pred, maps))
    np.testing.assert_array_equal(chunked.previews()[0], block_mode(pred, 4))
    for name, m in maps.items():
        np.testing.assert_allclose(chunked.previews()[1][name], block_mean(m.astype(np.float64), 4), rtol=1e-6)


def test_bad_bands_raise_and_leave_the_summary_unchanged() -> None:
    pred, maps = scene(6)
    summary = BandSummary(H, W, NAMES, MAPS)

    def band(top: int, rows: int, width: int = W) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return pred[top : top + rows, :width], {name: m[top : top + rows, :width] for name, m in maps.items()}

    with pytest.raises(ValueError, match="starts at row 5 but the next row is 0"):
        summary.add(5, *band(5, 5))
    summary.add(0, *band(0, 10))
    with pytest.raises(ValueError, match="starts at row 12 but the next row is 10"):  # gap
        summary.add(12, *band(12, 5))
    with pytest.raises(ValueError, match="starts at row 8 but the next row is 10"):  # overlap
        summary.add(8, *band(8, 5))
    with pytest.raises(ValueError, match=rf"must be \(rows, {W}\)"):
        summary.add(10, *band(10, 5, width=W - 1))
    labels, values = band(10, 5)
    with pytest.raises(ValueError, match="lacks the maps \\['entropy'\\]"):
        summary.add(10, labels, {k: v for k, v in values.items() if k != "entropy"})
    with pytest.raises(ValueError, match="'entropy' is"):
        summary.add(10, labels, {**values, "entropy": values["entropy"][:, :-1]})
    with pytest.raises(ValueError, match="pass the image's 37 rows"):
        summary.add(10, np.zeros((H - 9, W), dtype=np.uint8), {name: np.zeros((H - 9, W), dtype=np.float32) for name in MAPS})
    with pytest.raises(ValueError, match="non-negative"):
        summary.add(10, labels.astype(np.int8) - 1, values)
    with pytest.raises(ValueError, match="integer class indices"):
        summary.add(10, labels.astype(np.float32), values)
    with pytest.raises(RuntimeError, match="only 10 of the image's 37 rows"):
        summary.means()
    summary.add(10, *band(10, H - 10))
    assert summary.means() == pytest.approx({name: m.mean(dtype=np.float64) for name, m in maps.items()}, rel=1e-12)


def test_constructor_rejects_empty_images_and_repeated_maps() -> None:
    with pytest.raises(ValueError, match="at least one pixel"):
        BandSummary(0, 5, NAMES, MAPS)
    with pytest.raises(ValueError, match="repeat"):
        BandSummary(5, 5, NAMES, ["entropy", "entropy"])
    with pytest.raises(ValueError, match="preview_side"):
        BandSummary(5, 5, NAMES, MAPS, preview_side=0)
