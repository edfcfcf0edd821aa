"""Concurrent requests on a model whose dropout sits inside the decoder, where every forward pass reads the
request's own sampling plan (the head-only models take the tiled path, which draws its masks without it)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webutil import LiveServer, random_png, web_settings


@pytest.fixture(scope="module")
def decoder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server of the tiny model with channel dropout after the last decoder block, two analyses at a time."""
    spec = importlib.util.spec_from_file_location("tests_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    bundle = fixtures.make_tiny_bundle(tmp_path_factory.mktemp("decoder") / "tiny_decoder", sites=["decoder.blocks.2"])
    server = LiveServer(web_settings(bundle, max_concurrent=2, max_samples=64)).start()
    yield server
    server.stop()


def _analyse(url: str, image: bytes, seed: int) -> dict[str, Any]:
    data = {"samples": "48", "seed": str(seed), "raw": "true", "resolution": "full"}
    response = httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.png", image, "image/png")}, data=data, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_concurrent_requests_keep_their_own_dropout_plan(decoder_server: LiveServer) -> None:
    """Two requests with different seeds, run at the same time (many times over), give exactly their sequential maps."""
    image = random_png(96, 96, seed=9)
    seeds = (101, 202)
    sequential = {seed: _analyse(decoder_server.url, image, seed) for seed in seeds}
    assert sequential[101]["mean_probs"]["data"] != sequential[202]["mean_probs"]["data"]
    for _ in range(3):
        results: dict[int, dict[str, Any]] = {}
        barrier = threading.Barrier(len(seeds))

        def worker(seed: int, results: dict[int, dict[str, Any]] = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            results[seed] = _analyse(decoder_server.url, image, seed)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert set(results) == set(seeds)
        for seed in seeds:
            assert results[seed]["mean_probs"]["data"] == sequential[seed]["mean_probs"]["data"], seed
            assert [m["values"]["data"] for m in results[seed]["maps"]] == [m["values"]["data"] for m in sequential[seed]["maps"]]
