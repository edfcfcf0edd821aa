"""The region table on handcrafted label maps with known areas, boxes and means."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from app.maps.mc_error import mean_errors
from app.maps.regions import Region, region_table

NAMES = ["background", "car", "tree"]


def _scene() -> np.ndarray:
    """A 20×30 background with two class-1 squares (6×6 and 4×4) and one class-2 rectangle (3×5)."""
    pred = np.zeros((20, 30), dtype=np.int64)
    pred[2:8, 3:9] = 1  # 36 px
    pred[12:16, 20:24] = 1  # 16 px
    pred[14:17, 2:7] = 2  # 15 px
    return pred


def _maps(shape: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"entropy": rng.random(shape).astype(np.float32), "variance": rng.random(shape).astype(np.float32) * 0.25}


def _rows(table: list[Region], kind: str, cls: int | None = None) -> list[Region]:
    return [r for r in table if r.kind == kind and (cls is None or r.class_index == cls)]


def test_class_rows_have_areas_shares_boxes_and_means() -> None:
    """Class rows: pixel counts, share of the image, [x0, y0, x1, y1) boxes and float64 means over the class."""
    pred, maps = _scene(), _maps((20, 30))
    table = region_table(pred, maps, NAMES, min_area=1)
    classes = _rows(table, "class")
    assert [r.class_index for r in classes] == [0, 1, 2]
    assert [r.class_name for r in classes] == NAMES
    assert [r.pixels for r in classes] == [600 - 36 - 16 - 15, 52, 15]
    assert [r.share for r in classes] == pytest.approx([533 / 600, 52 / 600, 15 / 600])
    assert classes[1].bbox == [3, 2, 24, 16]
    assert classes[2].bbox == [2, 14, 7, 17]
    assert classes[0].bbox == [0, 0, 30, 20]
    assert all(r.component is None for r in classes)
    for r in classes:
        mask = pred == r.class_index
        for name, values in maps.items():
            assert r.means[name] == pytest.approx(values.astype(np.float64)[mask].mean(), rel=1e-9)


def test_components_sorted_largest_first_with_their_own_means() -> None:
    """Class 1 has two components (36 then 16 px), each with its own box and means."""
    pred, maps = _scene(), _maps((20, 30), seed=1)
    comps = _rows(region_table(pred, maps, NAMES, min_area=1), "component", 1)
    assert [(r.component, r.pixels) for r in comps] == [(1, 36), (2, 16)]
    assert comps[0].bbox == [3, 2, 9, 8]
    assert comps[1].bbox == [20, 12, 24, 16]
    assert comps[1].share == pytest.approx(16 / 600)
    for r, (ys, xs) in zip(comps, [(slice(2, 8), slice(3, 9)), (slice(12, 16), slice(20, 24))], strict=True):
        for name, values in maps.items():
            assert r.means[name] == pytest.approx(float(values[ys, xs].astype(np.float64).mean()), rel=1e-9)


def test_smaller_component_listed_first_in_input_is_still_ranked_second() -> None:
    """Order is by size, not by scan order: a small blob above a big one comes second."""
    pred = np.zeros((12, 12), dtype=np.int64)
    pred[0:2, 0:2] = 1  # 4 px, scanned first
    pred[5:11, 5:11] = 1  # 36 px
    comps = _rows(region_table(pred, {}, NAMES, min_area=1), "component", 1)
    assert [r.pixels for r in comps] == [36, 4]
    assert comps[0].bbox == [5, 5, 11, 11]


def test_min_area_filters_components_but_not_classes() -> None:
    """min_area=20 drops the 16 px and 15 px components; their class rows still count every pixel."""
    pred, maps = _scene(), _maps((20, 30))
    table = region_table(pred, maps, NAMES, min_area=20)
    assert [(r.class_index, r.pixels) for r in _rows(table, "component") if r.class_index != 0] == [(1, 36)]
    assert [r.pixels for r in _rows(table, "class")] == [533, 52, 15]
    exactly = region_table(pred, maps, NAMES, min_area=16)
    assert [r.pixels for r in _rows(exactly, "component", 1)] == [36, 16]
    assert _rows(exactly, "component", 2) == []


def test_class_rows_come_before_component_rows() -> None:
    """All class rows first, in class order, then components grouped by class."""
    table = region_table(_scene(), {}, NAMES, min_area=1)
    kinds = [r.kind for r in table]
    assert kinds == ["class"] * 3 + ["component"] * (len(kinds) - 3)
    comp_classes = [r.class_index for r in table if r.kind == "component"]
    assert comp_classes == sorted(comp_classes)


def test_diagonal_neighbours_join_one_component() -> None:
    """8-connectivity: a diagonal staircase is one component; separated pixels are not."""
    pred = np.zeros((6, 6), dtype=np.int64)
    for k in range(4):
        pred[k, k] = 1
    pred[5, 0] = 1  # isolated
    comps = _rows(region_table(pred, {}, NAMES, min_area=1), "component", 1)
    assert [r.pixels for r in comps] == [4, 1]
    assert comps[0].bbox == [0, 0, 4, 4]
    assert comps[1].bbox == [0, 5, 1, 6]


def test_absent_classes_have_no_rows_and_unknown_index_gets_its_number() -> None:
    """Only predicted classes appear; an index beyond the names is named by its number."""
    pred = np.array([[0, 0], [4, 4]], dtype=np.int64)
    table = region_table(pred, {}, NAMES, min_area=1)
    assert [(r.class_index, r.class_name) for r in _rows(table, "class")] == [(0, "background"), (4, "4")]


def test_min_area_below_one_rejected() -> None:
    """min_area must be ≥ 1."""
    with pytest.raises(ValueError, match="min_area"):
        region_table(_scene(), {}, NAMES, min_area=0)


def test_rows_equal_those_of_the_pixels_listed_by_nonzero() -> None:
    """Gathering by masks (in bands of rows for the areas) gives exactly the areas, boxes and float64 means (and replicate
    means) of the pixel lists ``np.nonzero`` gives, on a random 3-class map with many components."""
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 3, (60, 70)) * (rng.random((60, 70)) < 0.7)
    maps = _maps(pred.shape, seed=2)
    replicates = {"entropy": rng.random((4, *pred.shape)).astype(np.float32)}
    table = region_table(pred, maps, NAMES, min_area=3, replicates=replicates, samples=8)
    expected = []
    for c in np.unique(pred):
        mask = pred == c
        regions = [np.nonzero(mask)]
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        regions += [np.nonzero(labels == k + 1) for k in np.argsort(-sizes, kind="stable") if sizes[k] >= 3]
        expected.append((int(c), regions))
    rows = iter(_rows(table, "class") + _rows(table, "component"))
    ordered = [(c, r[0]) for c, r in expected] + [(c, px) for c, r in expected for px in r[1:]]
    assert len(table) == len(ordered) > 20
    for (c, (ys, xs)), row in zip(ordered, rows, strict=True):
        assert row.class_index == c and row.pixels == ys.size
        assert row.bbox == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert row.means == {k: float(np.mean(v[ys, xs], dtype=np.float64)) for k, v in maps.items()}
        assert row.errors == mean_errors(maps, {k: v[:, ys, xs].mean(axis=1, dtype=np.float64) for k, v in replicates.items()}, 8)
    assert _rows(table, "class")[0].errors["entropy"] is not None
