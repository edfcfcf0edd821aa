"""Full-resolution uploads beyond ``stream_pixels`` are streamed to a store on the server, against real uvicorn servers:
a job with rising progress, previews in the answer and by id, exact pixels and the NPZ read from the store, the region
table (class rows and components), all equal to the in-memory analysis of the same image; the store goes when its id does.

The tiny model with a 1 MiB memory budget analyses a 64×2100 strip in sliding windows either way, so the streamed and the
in-memory analyses run the same tiles; its previews are ``⌈2100 / 2048⌉ = 2`` times smaller.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from webutil import LiveServer, assert_error, encode_image, web_settings

from app.io.zarr_store import read_map
from app.maps.registry import MAP_NAMES
from app.web.cache import AnalysisCache, CachedAnalysis

HEIGHT, WIDTH = 64, 2100
TIMEOUT = 60.0
FORM = {"resolution": "full", "samples": "2", "seed": "5"}


def settings_of(bundle_dir: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {"max_pixels": 300_000, "memory_budget": 2**20, "max_concurrent": 1, "max_jobs": 3, "stream_pixels": 10_000}
    return web_settings(bundle_dir, **(values | overrides))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def streamed(tiny_bundle_dir: Path, stores: Path) -> Iterator[LiveServer]:
    """Streams every full-resolution upload of more than 10 000 pixels; keeps one analysis."""
    live = LiveServer(settings_of(tiny_bundle_dir, store_dir=stores, cache_entries=1)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def in_memory(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """The same model and budget, streaming nothing: the reference."""
    live = LiveServer(settings_of(tiny_bundle_dir, stream_pixels=10**9)).start()
    yield live
    live.stop()


def strip(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    return encode_image(np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)))


def analyse(url: str, image: bytes, **form: str) -> dict[str, Any]:
    """POST as a job, poll it to the end (progress must rise), and return its result."""
    response = httpx.post(f"{url}/api/v1/analyze", files={"file": ("strip.png", image)}, data={**FORM, "mode": "job", **form}, timeout=TIMEOUT)
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        status = httpx.get(f"{url}{status_url}", timeout=TIMEOUT).json()
        seen.append(status["progress"])
        if status["state"] in ("done", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["state"] == "done", status
    assert seen[-1] == 1.0
    result = httpx.get(f"{url}{status['result_url']}", timeout=TIMEOUT)
    assert result.status_code == 200, result.text
    return dict(result.json())


def png_size(url: str) -> tuple[int, int]:
    response = httpx.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as png:
        return png.size


def test_a_streamed_job_answers_previews_and_reads_exact_pixels_from_its_store(streamed: LiveServer, in_memory: LiveServer, stores: Path) -> None:
    image = strip()
    answer = analyse(streamed.url, image)
    reference = analyse(in_memory.url, image)
    assert (answer["preview_factor"], answer["width"], answer["height"]) == (2, WIDTH // 2, HEIGHT // 2)
    assert answer["analysed_size"] == reference["analysed_size"] == [WIDTH, HEIGHT]
    assert reference["preview_factor"] == 1 and (reference["width"], reference["height"]) == (WIDTH, HEIGHT)
    for got, want in zip(answer["maps"], reference["maps"], strict=True):
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-6, abs=1e-9), got["name"]
    regions = reference["regions"]
    assert any(r["kind"] == "component" for r in answer["regions"])
    fields = ("kind", "class_index", "component", "pixels", "bbox")
    assert [tuple(r[f] for f in fields) for r in answer["regions"]] == [tuple(r[f] for f in fields) for r in regions]
    for got, want in zip(answer["regions"], regions, strict=True):
        assert got["means"] == pytest.approx(want["means"], rel=1e-5, abs=1e-9)
    [store] = list(stores.glob("*.zarr"))
    assert png_size(f"{streamed.url}{answer['maps'][1]['url']}") == (WIDTH // 2, HEIGHT // 2)
    for x, y in ((0, 0), (WIDTH - 1, HEIGHT - 1), (1234, 17)):
        got = httpx.get(f"{streamed.url}{answer['pixel_url']}", params={"x": x, "y": y}, timeout=TIMEOUT).json()
        want = httpx.get(f"{in_memory.url}{reference['pixel_url']}", params={"x": x, "y": y}, timeout=TIMEOUT).json()
        for name in MAP_NAMES:
            assert got["values"][name] == pytest.approx(want["values"][name], rel=2**-11, abs=2**-24), (x, y, name)
            assert got["values"][name] == float(read_map(store, name)[y, x])
        assert got["prediction"] == want["prediction"]
        assert [c["index"] for c in got["top"]] == [c["index"] for c in want["top"]]
        assert [c["probability"] for c in got["top"]] == pytest.approx([c["probability"] for c in want["top"]], rel=1e-6)
    outside = httpx.get(f"{streamed.url}{answer['pixel_url']}", params={"x": WIDTH, "y": 0}, timeout=TIMEOUT)
    assert_error(outside, 422, "validation_error", "x")


def test_the_npz_of_a_streamed_analysis_is_read_from_its_store(streamed: LiveServer, stores: Path) -> None:
    answer = analyse(streamed.url, strip(1))
    [store] = list(stores.glob("*.zarr"))
    response = httpx.get(f"{streamed.url}{answer['npz_url']}", params={"save": "mean_probs"}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    arrays = np.load(io.BytesIO(response.content))
    assert arrays["entropy"].shape == (HEIGHT, WIDTH) and arrays["entropy"].dtype == np.float16
    np.testing.assert_array_equal(arrays["mutual_information"], read_map(store, "mutual_information"))
    np.testing.assert_array_equal(arrays["prediction"], read_map(store, "prediction"))
    assert arrays["mean_probs"].shape == (3, HEIGHT, WIDTH)
    missing = httpx.get(f"{streamed.url}{answer['npz_url']}", params={"save": "probs"}, timeout=TIMEOUT)
    assert "mean_probs" in assert_error(missing, 422, "validation_error", "save")["message"]


def test_a_store_goes_with_its_id(streamed: LiveServer, stores: Path) -> None:
    """With one analysis kept, the next one evicts the first: its store is removed and its id answers 404."""
    first = analyse(streamed.url, strip(2))
    [first_store] = list(stores.glob("*.zarr"))
    second = analyse(streamed.url, strip(3))
    assert not first_store.exists()
    assert len(list(stores.glob("*.zarr"))) == 1
    gone = httpx.get(f"{streamed.url}{first['pixel_url']}", params={"x": 0, "y": 0}, timeout=TIMEOUT)
    assert_error(gone, 404, "analysis_not_found")
    assert httpx.get(f"{streamed.url}{second['pixel_url']}", params={"x": 0, "y": 0}, timeout=TIMEOUT).status_code == 200


def test_a_cache_of_its_own_removes_its_stores_when_closed() -> None:
    cache = AnalysisCache(4, 2**30, 60.0)
    path = cache.new_store()
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    entry = CachedAnalysis({"prediction": np.zeros((2, 2), np.uint8)}, ["a"], ["#000000"], store=path, size=(4, 4), disk_bytes=2)
    assert cache.put(entry) is not None and cache.holds(path)
    root = path.parent
    cache.close()
    assert not path.exists() and not root.exists()
