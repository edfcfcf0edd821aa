"""The compact transport's parts in-process: greyscale PNG encoder, NPZ writer, analysis cache and colour-bar ticks."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from app.io.bundle import Bundle
from app.io.npz import full_arrays
from app.maps.registry import MAPS
from app.request import AnalysisRequest
from app.web.cache import AnalysisCache, CachedAnalysis
from app.web.encoding import keep, kept_bytes
from app.web.png import grey_png, paeth_filter
from app.web.scales import colour_table_hex, ticks
from app.workflows.analyzer import Analyzer


def paeth_reference(image: np.ndarray) -> np.ndarray:
    """The PNG specification's Paeth filter, pixel by pixel."""
    out = np.zeros_like(image)
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            a = int(image[y, x - 1]) if x else 0
            b = int(image[y - 1, x]) if y else 0
            c = int(image[y - 1, x - 1]) if x and y else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            out[y, x] = (int(image[y, x]) - predictor) % 256
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (17, 23)])
def test_grey_png_round_trips_and_filters_like_the_spec(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for image in (rng.integers(0, 256, shape, dtype=np.uint8), np.cumsum(rng.integers(-2, 3, shape), axis=1).astype(np.uint8)):
        np.testing.assert_array_equal(paeth_filter(image), paeth_reference(image))
        decoded = Image.open(io.BytesIO(grey_png(image)))
        assert decoded.mode == "L" and decoded.info.get("gamma") is None
        np.testing.assert_array_equal(np.asarray(decoded), image)


def test_grey_png_refuses_what_it_cannot_encode() -> None:
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="greyscale PNG"):
            grey_png(bad)


def entry(nbytes: int) -> CachedAnalysis:
    return CachedAnalysis(arrays={"prediction": np.zeros(nbytes, np.uint8).reshape(1, -1)}, class_names=["a", "b"], class_colours=["#000000", "#ffffff"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_ttl_refreshes_on_use() -> None:
    clock = Clock()
    cache = AnalysisCache(max_entries=10, max_bytes=10_000, ttl=10.0, clock=clock)
    kept, idle = cache.put(entry(100)), cache.put(entry(100))
    assert kept and idle and kept != idle
    clock.now = 9.0
    assert cache.get(kept) is not None
    clock.now = 10.0
    assert cache.get(idle) is None and cache.nbytes == 100
    clock.now = 18.9
    assert cache.get(kept) is not None
    clock.now = 28.9
    assert cache.get(kept) is None and len(cache) == 0 and cache.nbytes == 0
    assert cache.get("never-issued") is None


def test_cache_bounds_entries_and_bytes_least_recently_used_first() -> None:
    cache = AnalysisCache(max_entries=3, max_bytes=1000, ttl=100.0, clock=Clock())
    a, b, c = (cache.put(entry(300)) for _ in range(3))
    assert a and b and c
    assert cache.get(a) is not None
    d = cache.put(entry(300))
    assert d is not None
    assert cache.get(b) is None and all(cache.get(k) is not None for k in (a, c, d))
    e = cache.put(entry(700))
    assert e is not None and cache.nbytes <= 1000
    assert [cache.get(k) is not None for k in (a, c, d, e)] == [False, False, True, True]
    assert cache.put(entry(1001)) is None and cache.nbytes == 1000
    assert AnalysisCache(max_entries=0, max_bytes=1000, ttl=1.0).put(entry(1)) is None


def test_cache_is_consistent_under_concurrent_use() -> None:
    cache = AnalysisCache(max_entries=20, max_bytes=20 * 64, ttl=100.0)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            key = cache.put(entry(int(rng.integers(1, 65))))
            assert key is not None
            with lock:
                ids.append(key)
            cache.get(ids[int(rng.integers(0, len(ids)))])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alive = [e for k in set(ids) if (e := cache.get(k)) is not None]
    assert len(ids) == len(set(ids)) == 1600
    assert 0 < len(alive) <= 20 and cache.nbytes == sum(e.nbytes for e in alive) <= 20 * 64


@pytest.mark.parametrize("num_classes", [3, 5, 19])
def test_ticks_sit_at_the_true_values_on_every_scale(num_classes: int) -> None:
    for spec in MAPS:
        marks = ticks(spec, num_classes)
        lo, hi = spec.range(num_classes)
        assert marks[0].value == lo and marks[-1].value == hi and 3 <= len(marks) <= 6
        positions = [t.position for t in marks]
        assert positions == sorted(positions) and min(np.diff(positions)) >= 0.14 - 1e-12
        for t in marks:
            assert t.position == pytest.approx(float(spec.to_display(np.array(t.value), num_classes)), abs=1e-12)
            assert float(t.label) == pytest.approx(t.value, rel=5e-3, abs=5e-4)


def test_colour_tables_are_sent_as_hex() -> None:
    hex_table = colour_table_hex("viridis")
    assert len(hex_table) == 6 * 256 and hex_table.startswith("440154") and hex_table.endswith("fde725")


def test_an_analysis_too_large_to_keep_is_not_copied(tiny_bundle: Bundle) -> None:
    analysis = Analyzer(tiny_bundle).analyze_image(np.full((24, 40, 3), 90, np.uint8), AnalysisRequest(samples=1))
    exact = sum(a.nbytes for a in full_arrays(analysis).values())
    assert kept_bytes(analysis) == exact and kept_bytes(analysis, scored=True) == exact + 24 * 40
    assert keep(AnalysisCache(4, exact - 1, 1.0), analysis, tiny_bundle.card, "x.png") is None
    cache = AnalysisCache(4, exact, 1.0)
    key = keep(cache, analysis, tiny_bundle.card, "x.png")
    assert key is not None and cache.nbytes == exact
