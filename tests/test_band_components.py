"""Components streamed band by band and strip by strip against region_table's component rows of the whole label map:
the same classes, ranks, pixels, boxes and shares, means to float rounding, sure shares; small ones left out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.maps.band_components import StreamedComponents
from app.maps.regions import region_table

NAMES = ["bg", "a", "b", "c"]


def labels(seed: int, height: int, width: int) -> np.ndarray:
    """Blobs of four classes with noise: components of every size, touching band and strip seams and diagonals."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 4, (height // 4 + 1, width // 4 + 1))
    pred = np.kron(small, np.ones((4, 4), dtype=np.int64))[:height, :width]
    noise = rng.random((height, width)) < 0.15
    pred[noise] = rng.integers(0, 4, int(noise.sum()))
    return pred.astype(np.uint8)


def cuts(rng: np.random.Generator, length: int, most: int) -> list[int]:
    bounds, at = [0], 0
    while at < length:
        at = min(length, at + int(rng.integers(1, most + 1)))
        bounds.append(at)
    return bounds


@pytest.mark.parametrize(("seed", "strips"), [(0, 1), (1, 3), (2, 5), (3, 2)])
def test_streamed_components_equal_region_tables(seed: int, strips: int) -> None:
    height, width = 61, 83
    pred = labels(seed, height, width)
    rng = np.random.default_rng(seed + 10)
    maps = {"m": rng.random((height, width)).astype(np.float32), "n": rng.random((height, width)).astype(np.float32)}
    sure = rng.random((height, width)) < 0.6
    columns = [0, *sorted(rng.choice(np.arange(1, width), strips - 1, replace=False).tolist()), width] if strips > 1 else [0, width]
    streamed = StreamedComponents(height, width, [*maps, "sure"], min_area=5)
    for left, right in itertools.pairwise(columns):
        rows = cuts(rng, height, 9)
        for top, bottom in itertools.pairwise(rows):
            block = (slice(top, bottom), slice(left, right))
            streamed.add(top, left, pred[block], [maps["m"][block], maps["n"][block], sure[block].astype(np.float32)])
    got = streamed.rows(NAMES, sure="sure")
    want = [r for r in region_table(pred, maps, NAMES, min_area=5, sure=sure) if r.kind == "component"]
    assert len(got) == len(want) > 20
    for g, w in zip(got, want, strict=True):
        assert (g.class_index, g.component, g.pixels, g.bbox, g.class_name) == (w.class_index, w.component, w.pixels, w.bbox, w.class_name)
        assert g.share == pytest.approx(w.share, rel=1e-12)
        assert g.means == pytest.approx(w.means, rel=1e-6)
        assert g.sure_share == pytest.approx(w.sure_share, rel=1e-9)


def test_memory_holds_the_open_components_only() -> None:
    """A tall stripe image: each band's components close when the next band starts, so the tables stay small."""
    height, width = 4000, 40
    pred = labels(5, height, width)
    streamed = StreamedComponents(height, width, ["m"], min_area=10**9)
    for top in range(0, height, 8):
        streamed.add(top, 0, pred[top : top + 8], [np.zeros((min(8, height - top), width), np.float32)])
        assert streamed._parent.size < 4000
    assert streamed.rows(NAMES) == []


def test_bands_larger_than_a_chunk_are_taken_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 100-pixel chunks every band of a 61×83 map is split into single rows: the rows still equal region_table's."""
    from app.maps import band_components

    monkeypatch.setattr(band_components, "CHUNK_PIXELS", 100)
    pred = labels(9, 61, 83)
    streamed = StreamedComponents(61, 83, [], min_area=3)
    streamed.add(0, 0, pred[:40], [])
    streamed.add(40, 0, pred[40:], [])
    got = [(r.class_index, r.component, r.pixels, r.bbox) for r in streamed.rows(NAMES)]
    want = [(r.class_index, r.component, r.pixels, r.bbox) for r in region_table(pred, {}, NAMES, min_area=3) if r.kind == "component"]
    assert got == want and len(got) > 20
