"""Dynamic batching through a live server: concurrent requests of one analysed size share a prefix pass, each still
gets its own analysis (its seed, its image), a disconnected client's request is left out of its batch, and the batch
sizes reach /metrics.

The server analyses at a working size of 32 px, so uploads of 48x64 and 96x128 are analysed at the same 24x32 (one
bucket), a 32x32 upload at 32x32 (another). Its batches wait up to WAIT_MS for company, long enough that requests sent
together meet on a loaded machine.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from webutil import LiveServer, random_png, wait_ready, web_settings

from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.web.factory import create_app
from app.web.service import AnalysisService
from app.workflows.analyzer import Analyzer

SAMPLES = 8
WAIT_MS = 4000
ATOL = 1e-5  # batched convolutions may round differently (see tests/test_batching.py)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(working_bundle_dir: Path) -> Iterator[LiveServer]:
    """Six running slots, batches of up to four."""
    settings = web_settings(working_bundle_dir, max_concurrent=6, max_batch_size=4, max_wait_ms=WAIT_MS, cache_entries=0)
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def reference(working_bundle_dir: Path) -> Analyzer:
    """An analyser of the same bundle without batching."""
    return Analyzer(load_bundle(working_bundle_dir))


def _service(server: LiveServer) -> AnalysisService:
    service = server.app.state.service
    assert isinstance(service, AnalysisService)
    return service


def _batches(server: LiveServer) -> tuple[float, float]:
    """``segu_batch_size`` histogram's count and sum."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}
    return samples["segu_batch_size_count"], samples["segu_batch_size_sum"]


def _post(url: str, png: bytes, seed: int, timeout: float = 120) -> httpx.Response:
    data = {"samples": str(SAMPLES), "seed": str(seed), "format": "npz", "save": "mean_probs,class_variance"}
    return httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.png", png, "image/png")}, data=data, timeout=timeout)


Answers = dict[int, httpx.Response | Exception]


def _send(url: str, requests: Sequence[tuple[bytes, int]], answers: Answers, first: int = 0, timeout: float = 120) -> list[threading.Thread]:
    """Post ``requests`` from threads of their own; answers (or client errors) go to ``answers[first + i]``."""

    def work(index: int, png: bytes, seed: int) -> None:
        try:
            answers[index] = _post(url, png, seed, timeout)
        except Exception as exc:
            answers[index] = exc

    threads = [threading.Thread(target=work, args=(first + i, png, seed)) for i, (png, seed) in enumerate(requests)]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=180)
        assert not thread.is_alive()


def _wait_for(server: LiveServer, waiting: int) -> None:
    batcher = _service(server).batcher
    deadline = time.monotonic() + 60
    while batcher.waiting < waiting:
        assert time.monotonic() < deadline, f"{batcher.waiting} inputs waiting for a batch, expected {waiting}"
        time.sleep(0.01)


def _assert_alone(answer: httpx.Response | Exception | None, png: bytes, seed: int, reference: Analyzer) -> None:
    """The answer's arrays equal the unbatched analysis of ``png`` with ``seed``."""
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200, answer.text
    got = np.load(io.BytesIO(answer.content))
    want = reference.analyze_bytes(png, AnalysisRequest(samples=SAMPLES, seed=seed))
    for name, values in want.maps.items():
        np.testing.assert_allclose(got[name], values, rtol=2**-11, atol=ATOL, err_msg=name)  # float16 maps: within 2^-11 relative
    np.testing.assert_allclose(got["mean_probs"], want.mean_probs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got["class_variance"], want.class_variance, rtol=0, atol=ATOL)


def test_requests_analysed_at_one_size_share_a_batch_and_keep_their_own_results(server: LiveServer, reference: Analyzer) -> None:
    """Six requests at once, four analysed at 24x32 (two upload sizes) and two at 32x32: a batch of four runs as soon as
    it is full, the two others' after the wait; every answer equals its own unbatched analysis."""
    uploads = [random_png(48, 64, seed=1), random_png(96, 128, seed=2), random_png(48, 64, seed=3), random_png(96, 128, seed=4)]
    uploads += [random_png(32, 32, seed=5), random_png(32, 32, seed=6)]
    assert {reference.analysed_shape(48, 64), reference.analysed_shape(96, 128)} == {(24, 32)}
    requests = [(png, 1000 + i) for i, png in enumerate(uploads)]
    count, total = _batches(server)
    answers: Answers = {}
    _join(_send(server.url, requests, answers))
    for index, (png, seed) in enumerate(requests):
        _assert_alone(answers.get(index), png, seed, reference)
    assert _batches(server) == (count + 2, total + 6)


def test_a_disconnected_client_leaves_its_batch_and_the_others_get_their_answers(server: LiveServer, reference: Analyzer) -> None:
    """The first request of a batch gives up while the batch waits; the batch runs for the two others only."""
    uploads = [random_png(48, 64, seed=20 + i) for i in range(3)]
    count, total = _batches(server)
    answers: Answers = {}
    threads = _send(server.url, [(uploads[0], 7)], answers, timeout=1.0)
    _wait_for(server, 1)
    threads += _send(server.url, [(uploads[1], 8), (uploads[2], 9)], answers, first=1)
    _join(threads)
    assert isinstance(answers[0], httpx.TimeoutException), answers[0]
    _assert_alone(answers[1], uploads[1], 8, reference)
    _assert_alone(answers[2], uploads[2], 9, reference)
    assert _batches(server) == (count + 1, total + 2)


@pytest.mark.parametrize(("concurrent", "batch"), [(3, 3), (16, 8)])
def test_batch_size_and_wait_come_from_the_environment(concurrent: int, batch: int, working_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SEGU_MAX_BATCH_SIZE and SEGU_MAX_WAIT_MS set the batcher; a batch never holds more than SEGU_MAX_CONCURRENT."""
    monkeypatch.setenv("SEGU_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SEGU_MAX_WAIT_MS", "2.5")
    app = create_app(web_settings(working_bundle_dir, max_concurrent=concurrent, warmup=False))
    with TestClient(app, base_url="http://localhost") as client:
        wait_ready(client)
        assert isinstance(client.app, FastAPI)
        batcher = client.app.state.service.batcher
        assert (batcher.max_batch_size, batcher.max_wait) == (batch, 0.0025)
